//! Compact encoding of discharge curves for the store: little-endian `u32` sample count, then the
//! voltages, then the capacities, each as `f32` (µV and µAh resolution, a quarter of JSON's size).

use labloop_core::DischargeCurve;

/// Encodes a curve.
pub(crate) fn encode_curve(curve: &DischargeCurve) -> Vec<u8> {
    let n = curve.voltage_v.len().min(curve.capacity_ah.len());
    let mut out = Vec::with_capacity(4 + 8 * n);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for v in curve
        .voltage_v
        .iter()
        .take(n)
        .chain(curve.capacity_ah.iter().take(n))
    {
        out.extend_from_slice(&(*v as f32).to_le_bytes());
    }
    out
}

/// Decodes a curve, or says why it cannot.
pub(crate) fn decode_curve(bytes: &[u8]) -> Result<DischargeCurve, String> {
    let header: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("curve shorter than its header")?;
    let n = u32::from_le_bytes(header) as usize;
    if bytes.len() != 4 + 8 * n {
        return Err(format!(
            "curve of {n} samples needs {} bytes, has {}",
            4 + 8 * n,
            bytes.len()
        ));
    }
    let values: Vec<f64> = bytes[4..]
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("chunks of 4"))))
        .collect();
    Ok(DischargeCurve {
        voltage_v: values[..n].to_vec(),
        capacity_ah: values[n..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_f32() {
        let curve = DischargeCurve {
            voltage_v: vec![3.5, 3.2, 2.0],
            capacity_ah: vec![0.0, 0.5, 1.07],
        };
        let back = decode_curve(&encode_curve(&curve)).unwrap();
        for (a, b) in curve
            .voltage_v
            .iter()
            .chain(&curve.capacity_ah)
            .zip(back.voltage_v.iter().chain(&back.capacity_ah))
        {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn truncated_curves_are_refused() {
        let bytes = encode_curve(&DischargeCurve {
            voltage_v: vec![3.0; 4],
            capacity_ah: vec![0.1; 4],
        });
        assert!(
            decode_curve(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .contains("needs 36 bytes")
        );
        assert!(decode_curve(&[1, 2]).is_err());
    }
}
