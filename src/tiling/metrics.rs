//! Image comparison used by the tiling measurements and tests.

/// PSNR (dB, 8-bit peak) and max absolute difference of two equally sized 8-bit buffers.
pub fn psnr_u8(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len(), "images differ in size");
    let (mut se, mut max) = (0f64, 0u8);
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        max = max.max(d);
        se += (d as f64).powi(2);
    }
    let mse = se / a.len() as f64;
    let psnr = if mse == 0.0 { f64::INFINITY } else { 10.0 * (255f64.powi(2) / mse).log10() };
    (psnr, max)
}
