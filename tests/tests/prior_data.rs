//! A campaign that starts from cells a lab measured before (`campaign.prior_data`): vendor files
//! imported into a dataset, each cell matched to the candidate it ran. The prior lives reach the
//! optimizer (a protocol the campaign never cycled, known to live long, is recommended), a life
//! is read off a cell's own fade when not given, and a prior that does not match the store or
//! the search space stops the campaign before anything is cycled, naming the workflow's place.

use labloop_drivers::Cycler;
use labloop_engine::{CampaignRunner, resolve_model};
use labloop_sim::{SimClock, SimCycler};
use labloop_store::Store;
use labloop_tests::repo_root;
use labloop_workflow::{PriorCellSpec, PriorDataSpec, Workflow};
use std::sync::Arc;

/// An Arbin CSV of a cell that fades 1 % a cycle from 1.1 Ah: below 80 % from cycle 22 on.
fn fading_cell() -> String {
    let mut out = String::from(
        "Data_Point,Test_Time(s),Step_Index,Cycle_Index,Current(A),Voltage(V),Charge_Capacity(Ah),Discharge_Capacity(Ah)\n",
    );
    let mut point = 0;
    for c in 1..=40_u32 {
        let q = 1.1 * (1.0 - 0.01 * f64::from(c - 1));
        let t0 = f64::from(c) * 10_000.0;
        for (k, (i, v, qc, qd)) in [
            (1.0, 3.0, 0.0, 0.0),
            (1.0, 3.6, q, 0.0),
            (-1.0, 3.3, q, 0.0),
            (-1.0, 2.0, q, q),
        ]
        .into_iter()
        .enumerate()
        {
            point += 1;
            let t = t0 + k as f64 * 3600.0 * q;
            out += &format!("{point},{t},{},{c},{i},{v},{qc},{qd}\n", k / 2 + 1);
        }
    }
    out
}

async fn setup(tag: &str) -> (Workflow, String, Store, SimCycler) {
    let path = repo_root().join("workflows/fast-charge-clo.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut workflow = labloop_workflow::load(&path).unwrap();
    workflow.stopping.max_rounds = 1;
    let inst = &workflow.instruments[0];
    let sim = SimCycler::new(&inst.name, inst.channels, SimClock { acceleration: 1e6 }, 7);
    let db =
        std::env::temp_dir().join(format!("labloop-prior-{tag}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let file = labloop_import::import(fading_cell().as_bytes(), "lab/old-7.csv", None).unwrap();
    store.import_file("legacy", &file).await.unwrap();
    (workflow, text, store, sim)
}

fn runner(workflow: &Workflow, text: &str, store: &Store, sim: &SimCycler) -> CampaignRunner {
    let model = resolve_model(&workflow.predict_step().unwrap().model).unwrap();
    CampaignRunner::new(
        workflow.clone(),
        text.to_owned(),
        store.clone(),
        labloop_engine::Instruments {
            cyclers: vec![Arc::new(sim.clone()) as Arc<dyn Cycler>],
            builders: Vec::new(),
            plugins: Default::default(),
        },
        Arc::new(model),
    )
}

fn prior(cells: &[(&str, &str, Option<f64>)]) -> PriorDataSpec {
    PriorDataSpec {
        dataset: "legacy".into(),
        end_of_life_fraction: 0.8,
        cells: cells
            .iter()
            .map(|&(name, candidate, life)| {
                (
                    name.to_owned(),
                    PriorCellSpec {
                        candidate: candidate.into(),
                        life,
                    },
                )
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prior_lives_reach_the_optimizer() {
    let (mut workflow, text, store, sim) = setup("reach").await;
    let space = workflow.protocol_space().unwrap().enumerate();
    // A protocol the simulator rates low, known from before to live far longer than any.
    let favourite = space[200].to_string();
    workflow.campaign.prior_data = vec![prior(&[("old-7", &favourite, Some(2500.0))])];
    let result = runner(&workflow, &text, &store, &sim).run().await.unwrap();
    assert_eq!(
        result.ranking[0].protocol,
        favourite,
        "{:?}",
        &result.ranking[..3]
    );
    assert_eq!(
        result.ranking[0].cells, 0,
        "recommended from the prior alone"
    );
}

#[test]
fn a_life_is_read_off_the_cells_own_fade() {
    let file = labloop_import::import(fading_cell().as_bytes(), "old-7.csv", None).unwrap();
    let records: Vec<_> = file.cells[0].cycles.iter().map(|c| c.to_record()).collect();
    let life = labloop_predict::life::observed_life(
        &records,
        labloop_predict::life::EndOfLife::Fraction(0.8),
    );
    // 1.1 × (1 − 0.01 (c − 1)) < 0.88 from c = 22.
    assert_eq!(life, Some(22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prior_that_does_not_match_stops_the_campaign_before_it_starts() {
    let (mut workflow, text, store, sim) = setup("mismatch").await;
    let cases = [
        (
            prior(&[("old-7", "9.9-9.9-9.9-9.9", None)]),
            "campaign.prior_data[0].cells.old-7.candidate: `9.9-9.9-9.9-9.9` is not a candidate",
        ),
        (
            prior(&[("old-8", "4.8-5.2-5.2-4.16", Some(900.0))]),
            "campaign.prior_data[0].cells.old-8: dataset `legacy` has no cell `old-8`",
        ),
        (
            PriorDataSpec {
                dataset: "nothing".into(),
                ..prior(&[("old-7", "4.8-5.2-5.2-4.16", None)])
            },
            "campaign.prior_data[0].dataset: no dataset `nothing` in the store (it has: legacy)",
        ),
    ];
    for (spec, message) in cases {
        workflow.campaign.prior_data = vec![spec];
        let err = runner(&workflow, &text, &store, &sim)
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{err}");
    }
    assert!(
        store.campaigns().await.unwrap().is_empty(),
        "nothing started"
    );
}
