//! The serial driver against `labloop-sim serial` as a separate process, on a real pseudo-terminal:
//! every record of every channel arrives exactly once and equal to what the instrument measured, while
//! the simulator sends noise, loses, repeats and delays replies, and its port vanishes for seconds at a
//! time (device gone, link removed) and comes back. And a coin-cell builder on the same protocol.

mod common;

use common::{CYCLES, Killed, check, expected, run_tests, test};
use labloop_core::ChannelId;
use labloop_drivers::remote::{CommandLink, RemoteCellBuilder};
use labloop_drivers::serial::{SerialCycler, SerialLink, SerialOptions};
use labloop_drivers::wire::Op;
use labloop_drivers::{CellBuilder, CellOrder, Cycler, DriverError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("labloop-serial-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `labloop-sim serial` on a pty reachable at `link`; waits until the link exists.
fn simulator(link: &Path, args: &[&str]) -> Killed {
    let log = std::fs::File::create(link.with_extension("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
        .arg("serial")
        .arg("--link")
        .arg(link)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("labloop-sim starts");
    let sim = Killed(child);
    let started = Instant::now();
    while !link.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no port at {}",
            link.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sim
}

fn options() -> SerialOptions {
    SerialOptions {
        command_timeout: Duration::from_millis(300),
        attempts: 40,
        reconnect_for: Duration::from_secs(30),
        ..SerialOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_while_the_line_misbehaves_and_the_port_vanishes() {
    let dir = scratch("faults");
    let link = dir.join("cycler1.tty");
    let _sim = simulator(
        &link,
        &[
            "--name",
            "cycler1",
            "--channels",
            "4",
            "--acceleration",
            "60000",
            "--seed",
            "5",
            "--garbage",
            "0.05",
            "--drop-reply",
            "0.05",
            "--duplicate-reply",
            "0.05",
            "--delay-reply",
            "0.05",
            "--vanish-every",
            "2500ms",
            "--vanish-for",
            "3s",
        ],
    );
    let cycler = SerialCycler::new("cycler1", 4, link.to_str().unwrap(), 115_200, options());
    let started = Instant::now();
    let results = run_tests(&cycler, async {}).await;
    check(&results, &expected().await);
    let c = cycler.link().counters();
    println!(
        "{} records in {:?}: opens {}, protocol errors {}, stale replies {}, command retries {}",
        4 * CYCLES,
        started.elapsed(),
        c.opens.load(Ordering::Relaxed),
        c.protocol_errors.load(Ordering::Relaxed),
        c.stale_replies.load(Ordering::Relaxed),
        c.command_retries.load(Ordering::Relaxed)
    );
    assert!(
        c.opens.load(Ordering::Relaxed) >= 2,
        "the port never came back"
    );
    assert!(
        c.protocol_errors.load(Ordering::Relaxed) > 0,
        "no noise seen"
    );
    assert!(
        c.stale_replies.load(Ordering::Relaxed) > 0,
        "no late or repeated reply seen"
    );
    assert!(
        c.command_retries.load(Ordering::Relaxed) > 0,
        "no lost reply"
    );
    // A repeated start with the same key starts nothing new.
    let ch = ChannelId::from("cycler1/ch01");
    cycler.start(&ch, test(0)).await.unwrap();
    let again = cycler.records(&ch, 1).await.unwrap();
    assert!(again.records.len() <= CYCLES as usize && again.records[0].seq == 1);
    assert_eq!(
        cycler.status(&ch).await.unwrap(),
        labloop_drivers::ChannelStatus::Finished { cycles: CYCLES }
    );
    // Refusals come back as the driver's errors, naming the channel.
    let busy = cycler.start(&ch, test(9)).await;
    assert!(
        matches!(&busy, Ok(()) | Err(DriverError::Busy { .. })),
        "{busy:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_never_comes_back_is_an_error_naming_it() {
    let dir = scratch("gone");
    let link = dir.join("nothing.tty");
    let cycler = SerialCycler::new(
        "ghost",
        1,
        link.to_str().unwrap(),
        9600,
        SerialOptions {
            reconnect_for: Duration::from_millis(500),
            ..options()
        },
    );
    let e = cycler
        .status(&ChannelId::from("ghost/ch01"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ghost: ") && e.contains("nothing.tty"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_builder_on_the_serial_line() {
    let dir = scratch("builder");
    let link = dir.join("robot.tty");
    let _sim = simulator(
        &link,
        &[
            "--builder",
            "--name",
            "robot",
            "--acceleration",
            "100000",
            "--crimp-failure",
            "0.3",
            "--drop-reply",
            "0.2",
        ],
    );
    let link_to = SerialLink::new("robot", link.to_str().unwrap(), 115_200, options());
    let identity = link_to
        .command(Op::Identify, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(identity["model"], "labloop-sim cell builder");
    let robot = RemoteCellBuilder::new(link_to, Duration::from_millis(400));
    let mut failed = 0;
    for i in 0..30 {
        let order = CellOrder {
            key: format!("exp-{i}/build/1"),
            formulation: vec![("EC".into(), 0.3), ("EMC".into(), 0.7)],
            parameters: Vec::new(),
            electrolyte_ul: 70.0,
            cathode: "NMC811-18mg".into(),
            anode: "graphite-10mg".into(),
            separator: "Celgard-2325".into(),
        };
        let cell = robot.build(order.clone()).await.unwrap();
        assert_eq!(
            robot.build(order).await.unwrap(),
            cell,
            "a repeated order is the same cell"
        );
        assert!(cell.cell_id.starts_with("robot-"));
        assert!(cell.qc.ocv_v.is_some() && cell.qc.mass_g.is_some());
        assert_eq!(
            cell.dispensed_ul,
            vec![("EC".to_owned(), 21.0), ("EMC".to_owned(), 49.0)],
            "each stock dispenses its share"
        );
        failed += usize::from(!cell.qc.crimp_ok);
    }
    assert!(
        (1..30).contains(&failed),
        "{failed} of 30 crimps failed at p = 0.3"
    );
    let refused = robot
        .build(CellOrder {
            key: "too-much".into(),
            formulation: Vec::new(),
            parameters: Vec::new(),
            electrolyte_ul: 900.0,
            ..CellOrder::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("µL"), "{refused}");
    // A cycler command to a builder is refused, not misread.
    let e = robot
        .link()
        .command(
            Op::Status {
                channel: "ch01".into(),
            },
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("BAD_COMMAND"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_simulator_process_presents_several_cyclers_and_a_builder() {
    let dir = scratch("several");
    let (first, second, robot) = (
        dir.join("cycler1.tty"),
        dir.join("cycler2.tty"),
        dir.join("robot1.tty"),
    );
    let _sim = simulator(
        &first,
        &[
            "--link",
            second.to_str().unwrap(),
            "--builder-link",
            robot.to_str().unwrap(),
            "--channels",
            "2",
            "--acceleration",
            "1000000",
        ],
    );
    for (name, link) in [
        ("cycler1", &first),
        ("cycler2", &second),
        ("robot1", &robot),
    ] {
        let started = Instant::now();
        while !link.exists() {
            assert!(started.elapsed() < Duration::from_secs(10), "no {name}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let line = SerialLink::new(name, link.to_str().unwrap(), 115_200, options());
        let identity = line
            .command(Op::Identify, Duration::from_secs(1))
            .await
            .unwrap();
        let channels = identity["channels"].as_array().unwrap().len();
        // A port is opened by one driver at a time (exclusive, as real serial ports are).
        drop(line);
        if name == "robot1" {
            assert_eq!(identity["model"], "labloop-sim cell builder");
            continue;
        }
        assert_eq!(
            (identity["model"].as_str(), channels),
            (Some("labloop-sim cycler"), 2)
        );
        // Each cycler runs its own tests, under its own name.
        let cycler = SerialCycler::new(name, 2, link.to_str().unwrap(), 115_200, options());
        let channel = ChannelId::from(format!("{name}/ch02").as_str());
        cycler.start(&channel, test(1)).await.unwrap();
        let mut next = 1;
        loop {
            let batch = cycler.records(&channel, next).await.unwrap();
            next += batch.records.len() as u64;
            if batch.finished {
                break;
            }
        }
        assert_eq!(next, u64::from(CYCLES) + 1, "{name}: every record");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A line that carries only noise names that as the cause, not "no reply".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_noise_is_named_a_protocol_error() {
    let dir = scratch("noise");
    let link = dir.join("cycler1.tty");
    let _sim = simulator(
        &link,
        &["--channels", "1", "--garbage", "1", "--drop-reply", "1"],
    );
    let cycler = SerialCycler::new(
        "cycler1",
        1,
        link.to_str().unwrap(),
        115_200,
        SerialOptions {
            command_timeout: Duration::from_millis(200),
            attempts: 3,
            ..SerialOptions::default()
        },
    );
    let e = cycler
        .status(&ChannelId::from("cycler1/ch01"))
        .await
        .unwrap_err();
    assert!(matches!(e, DriverError::Protocol { .. }), "{e}");
    assert!(e.to_string().contains("no readable reply"), "{e}");
    assert!(e.to_string().contains("in 3 attempts"), "{e}");
}
