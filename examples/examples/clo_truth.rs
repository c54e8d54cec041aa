//! Prints the simulator's ground truth over the CLO space: the best and worst protocols and how
//! spread out they are. `cargo run -p labloop-examples --example clo_truth`
use labloop_sim::expected_life;

fn main() {
    let workflow = labloop_examples::clo_workflow();
    let mut lives: Vec<(f64, String)> = workflow
        .protocol_space()
        .expect("a charge-protocol campaign")
        .enumerate()
        .iter()
        .map(|p| (expected_life(p), p.to_string()))
        .collect();
    lives.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (i, (life, name)) in lives.iter().enumerate() {
        if i < 25 || i + 5 >= lives.len() {
            println!("{:>4} {name:<20} {life:>7.0}", i + 1);
        }
    }
    // How the simulator's order compares with the published campaign's estimates, when at hand.
    let table = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/clo/clo_estimated_cycle_lives.csv"
    );
    if let Ok(text) = std::fs::read_to_string(table) {
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .map(|v| v.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let space = workflow
            .protocol_space()
            .expect("a charge-protocol campaign");
        let pairs: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| space.protocol(&r[1..4]).map(|p| (expected_life(&p), r[5])))
            .collect();
        let ranks = |v: Vec<f64>| -> Vec<f64> {
            let mut idx: Vec<usize> = (0..v.len()).collect();
            idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            let mut r = vec![0.0; v.len()];
            for (k, &i) in idx.iter().enumerate() {
                r[i] = k as f64;
            }
            r
        };
        let (a, b) = (
            ranks(pairs.iter().map(|p| p.0).collect()),
            ranks(pairs.iter().map(|p| p.1).collect()),
        );
        let n = a.len() as f64;
        let mean = (n - 1.0) / 2.0;
        let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - mean) * (y - mean)).sum();
        let var: f64 = a.iter().map(|x| (x - mean).powi(2)).sum();
        println!(
            "Spearman rank correlation with the published CLO estimates ({} protocols): {:.2}",
            pairs.len(),
            cov / var
        );
    }
}
