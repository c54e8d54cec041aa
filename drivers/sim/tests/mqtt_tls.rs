//! MQTT over TLS with a user name and password: a Mosquitto of this test's own, with a certificate
//! from a CA the test makes (openssl) and a password file (mosquitto_passwd), serves `labloop-sim`
//! and the driver; every record arrives once. A wrong password, or a broker certificate from a CA
//! the driver does not trust, gets no connection at all.

mod common;

use common::{Killed, check, expected, run_tests};
use labloop_core::ChannelId;
use labloop_drivers::Cycler;
use labloop_drivers::broker::{BrokerAddress, TlsFiles};
use labloop_drivers::mqtt::{MqttCycler, MqttOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (apt-get install openssl mosquitto): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a certificate for localhost/127.0.0.1 signed by it, and a password file with `lab`.
fn credentials(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=labloop test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(dir, "openssl", &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(dir, "openssl", &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    run(
        dir,
        "mosquitto_passwd",
        &["-b", "-c", "passwd", "lab", "s3cret"],
    );
    // The broker may drop to its own user: let it read the test's files.
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        run(dir, "chmod", &["a+r", path.to_str().unwrap()]);
    }
    run(dir, "chmod", &["a+rx", dir.to_str().unwrap()]);
}

fn broker(dir: &Path, port: u16) -> Killed {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n\
             allow_anonymous false\npassword_file {d}/passwd\npersistence false\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("mosquitto.log")).unwrap();
    let broker = Killed(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return broker;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the TLS broker did not start: {}",
        std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
    );
}

fn address(port: u16, ca: Option<PathBuf>, password: &str) -> BrokerAddress {
    BrokerAddress::parse(&format!("mqtts://localhost:{port}"))
        .unwrap()
        .with_tls(TlsFiles {
            ca_file: ca,
            client: None,
        })
        .unwrap()
        .with_credentials("lab", password)
}

fn options() -> MqttOptionsExt {
    MqttOptionsExt {
        command_timeout: Duration::from_millis(400),
        attempts: 20,
        replay_after: Duration::from_millis(300),
        offline_after: Duration::from_secs(600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_password_carries_every_record_and_refuses_strangers() {
    let dir = std::env::temp_dir().join(format!("labloop-mqtt-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    credentials(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _broker = broker(&dir, port);
    let ca = dir.join("ca.crt");
    let prefix = format!("labloop-test/tls-{}/cycler1", std::process::id());
    let _sim = Killed(
        Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
            .args([
                "mqtt",
                "--broker",
                &format!("mqtts://lab:s3cret@localhost:{port}"),
            ])
            .args(["--ca-file", ca.to_str().unwrap(), "--prefix", &prefix])
            .args([
                "--name",
                "cycler1",
                "--channels",
                "2",
                "--acceleration",
                "2000000",
            ])
            .args(["--seed", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cycler = MqttCycler::connect_to(
        "cycler1",
        2,
        &address(port, Some(ca.clone()), "s3cret"),
        &prefix,
        options(),
    )
    .unwrap();
    let results = run_tests(&cycler, async {}).await;
    assert_eq!(results.len(), 2);
    check(&results, &expected().await);

    // A wrong password, or no trust in the broker's CA: no connection, commands time out.
    let quick = MqttOptionsExt {
        attempts: 2,
        ..options()
    };
    let channel = ChannelId::from("cycler1/ch01");
    for (why, stranger) in [
        ("wrong password", address(port, Some(ca.clone()), "guess")),
        ("untrusted CA", address(port, None, "s3cret")),
    ] {
        // (A machine with no system trust store refuses at once; that is a refusal too.)
        let Ok(driver) =
            MqttCycler::connect_to("cycler1", 2, &stranger, &format!("{prefix}-{why}"), quick)
        else {
            continue;
        };
        assert!(
            driver.status(&channel).await.is_err(),
            "{why}: a reply came"
        );
        assert_eq!(
            driver.counters().connects.load(Ordering::Relaxed),
            0,
            "{why}: connected"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
