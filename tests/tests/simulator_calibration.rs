//! The simulator is calibrated to the real cell: the lifetime model trained on real Severson cells
//! reads simulated cells sensibly. Prints the RMSE against the simulator's truth.

use labloop_predict::{EarlyData, Predictor, builtin_model};
use labloop_sim::{SimCell, fast_charge_to_80};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn real_data_model_predicts_simulated_cells() {
    let mut rng = StdRng::seed_from_u64(2019);
    let protocols: Vec<Vec<f64>> = vec![
        vec![1.0],
        vec![2.0],
        vec![3.6],
        vec![4.8, 4.8, 4.8, 4.8],
        vec![4.8, 5.2, 5.2, 4.16],
        vec![8.0, 7.0, 5.2, 2.68],
        vec![3.6, 6.0, 5.6, 4.755],
        vec![6.0, 6.0, 6.0, 6.0],
        vec![8.0, 8.0, 8.0, 8.0],
    ];
    for name in ["severson-variance", "severson-discharge"] {
        let model = builtin_model(name).unwrap();
        let (mut sq, mut ape, mut n, mut bias) = (0.0, 0.0, 0.0, 0.0);
        let mut inside = 0.0;
        for rates in &protocols {
            for _ in 0..12 {
                let cell = SimCell::new(&fast_charge_to_80(rates), 4.0, &mut rng);
                let records: Vec<_> = (1..=100).map(|c| cell.record(c, &mut rng)).collect();
                let features = EarlyData::from_records(&records, 100).unwrap().features();
                let p = model.predict(&[features]).unwrap()[0];
                let err = p.cycle_life - cell.life;
                sq += err * err;
                ape += (err / cell.life).abs();
                bias += (p.log10_life - cell.life.log10()) / p.sigma_log10;
                inside += f64::from(u8::from(
                    (p.log10_life - cell.life.log10()).abs() <= 2.0 * p.sigma_log10,
                ));
                n += 1.0;
            }
        }
        let (rmse, mape, z_bias, cover2) = ((sq / n).sqrt(), 100.0 * ape / n, bias / n, inside / n);
        println!(
            "{name} on {n} simulated cells: RMSE {rmse:.0} cycles, MAPE {mape:.1} %, mean error {z_bias:.2} σ, ±2σ coverage {cover2:.2}"
        );
        if name == "severson-variance" {
            assert!(mape < 25.0, "MAPE {mape}");
            assert!(z_bias.abs() < 1.0, "systematic bias of {z_bias} σ");
        }
    }
}
