//! Image decoding with limits (nothing is allocated for a header that lies), EXIF
//! orientation, alpha split, PNG encoding, and torch-compatible bicubic for the alpha plane.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, RgbaImage};
use thiserror::Error;

/// Inputs up to this many pixels are accepted (x4 output: 400 megapixels).
pub const MAX_INPUT_PIXELS: u64 = 25_000_000;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("the file is empty")]
    Empty,
    #[error("not a PNG, JPEG or WebP image")]
    UnknownFormat,
    #[error("{format} format is not supported (use PNG, JPEG or WebP)")]
    Unsupported { format: String },
    #[error("the image is {width}x{height} pixels; the largest supported input is {max} megapixels")]
    TooLarge { width: u32, height: u32, max: u64 },
    #[error("the image is corrupt or truncated: {0}")]
    Corrupt(String),
    /// The decoders would fill what is missing with grey and say nothing (Pillow refuses too).
    #[error("the image file is truncated: {0}")]
    Truncated(String),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
}

/// A decoded, upright image: RGB plus an optional alpha plane.
pub struct Decoded {
    pub rgb: RgbImage,
    pub alpha: Option<GrayImage>,
}

pub fn decode(bytes: &[u8]) -> Result<Decoded, ImageError> {
    decode_with_limit(bytes, MAX_INPUT_PIXELS)
}

pub fn decode_with_limit(bytes: &[u8], max_pixels: u64) -> Result<Decoded, ImageError> {
    let (_, mut decoder) = open(bytes, max_pixels, true)?;
    let (width, height) = decoder.dimensions();
    let mut limits = image::Limits::default();
    // Enough for the pixels at 16 bits per channel with alpha, and nothing more.
    limits.max_alloc = Some(width as u64 * height as u64 * 8 + (1 << 20));
    decoder.set_limits(limits).map_err(corrupt)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    let alpha = img.color().has_alpha().then(|| {
        let rgba = img.to_rgba8();
        GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| image::Luma([rgba.get_pixel(x, y)[3]]))
    });
    Ok(Decoded { rgb: img.to_rgb8(), alpha })
}

/// A JPEG must reach its end-of-image marker: walk the segments to the first scan, then look
/// for EOI in the entropy-coded data (where a 0xFF byte is always stuffed, so `FF D9` is the
/// marker). The JPEG decoder would otherwise give a grey lower part for a cut-off file.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), ImageError> {
    let truncated = |what: &str| Err(ImageError::Truncated(format!("JPEG {what} ({} bytes)", bytes.len())));
    let mut pos = 2; // after SOI
    loop {
        // Markers may be preceded by fill bytes 0xFF.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return truncated("ends before its first scan");
        };
        match marker {
            0xD9 => return truncated("ends before its first scan"),
            0x01 | 0xD0..=0xD7 => pos += 2, // no length
            _ => {
                let Some(len) = bytes.get(pos + 2..pos + 4).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else {
                    return truncated("ends inside a marker segment");
                };
                pos += 2 + len;
                if marker == 0xDA {
                    break;
                }
            }
        }
        if pos > bytes.len() {
            return truncated("ends inside a marker segment");
        }
    }
    if bytes.get(pos..).is_some_and(|scan| scan.windows(2).any(|w| w == [0xFF, 0xD9])) {
        Ok(())
    } else {
        truncated("has no end-of-image marker: the file was cut off")
    }
}

/// A WebP's RIFF header states the file's length.
fn check_webp_complete(bytes: &[u8]) -> Result<(), ImageError> {
    let declared = bytes.get(4..8).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) + 8;
    if bytes.len() < declared {
        return Err(ImageError::Truncated(format!("WebP has {} of its {declared} bytes", bytes.len())));
    }
    Ok(())
}

/// What an image's header says, read without decoding a pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Upright (after the EXIF orientation), as [`decode`] gives it.
    pub width: u32,
    pub height: u32,
    /// "png", "jpeg" or "webp".
    pub format: &'static str,
}

/// The header of a PNG, JPEG or WebP image with [`decode_with_limit`]'s checks on its format and
/// size; `bytes` may be only the file's beginning.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<Header, ImageError> {
    use image::metadata::Orientation as O;
    let (format, mut decoder) = open(bytes, max_pixels, false)?;
    let (w, h) = decoder.dimensions();
    let turned = matches!(decoder.orientation(), Ok(O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH));
    let (width, height) = if turned { (h, w) } else { (w, h) };
    let format = match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        _ => "webp",
    };
    Ok(Header { width, height, format })
}

/// A decoder for a PNG, JPEG or WebP image whose header's size is within `max_pixels`; no
/// pixel is decoded yet. `whole`: `bytes` must be the whole file (a cut-off one is refused).
fn open(bytes: &[u8], max_pixels: u64, whole: bool) -> Result<(ImageFormat, impl ImageDecoder + '_), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    // Our own size check comes first (the header is read without allocating pixels); the
    // library's default limits would refuse a large header with a vaguer message.
    reader.no_limits();
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => f,
        Some(other) => return Err(ImageError::Unsupported { format: format!("{other:?}") }),
        None => return Err(ImageError::UnknownFormat),
    };
    if let Ok(size) = imagesize::blob_size(bytes) {
        check_size(size.width as u64, size.height as u64, max_pixels)?;
    }
    match format {
        ImageFormat::Jpeg if whole => check_jpeg_complete(bytes)?,
        ImageFormat::WebP if whole => check_webp_complete(bytes)?,
        _ => {} // the PNG decoder reports a short IDAT stream itself
    }
    let decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt(format!("the header says {width}x{height} pixels")));
    }
    check_size(width as u64, height as u64, max_pixels)?;
    Ok((format, decoder))
}

fn check_size(width: u64, height: u64, max_pixels: u64) -> Result<(), ImageError> {
    if width * height > max_pixels {
        let (width, height) = (width.min(u32::MAX as u64) as u32, height.min(u32::MAX as u64) as u32);
        return Err(ImageError::TooLarge { width, height, max: max_pixels / 1_000_000 });
    }
    Ok(())
}

fn corrupt(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Limits(l) => ImageError::Corrupt(format!("the image needs more memory than its size allows ({l})")),
        image::ImageError::Unsupported(u) => ImageError::Unsupported { format: u.to_string() },
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// Encode RGB (+ alpha) as PNG bytes.
pub fn encode_png(rgb: &RgbImage, alpha: Option<&GrayImage>) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let result = match alpha {
        None => rgb.write_to(&mut Cursor::new(&mut out), ImageFormat::Png),
        Some(a) => RgbaImage::from_fn(rgb.width(), rgb.height(), |x, y| {
            let p = rgb.get_pixel(x, y);
            image::Rgba([p[0], p[1], p[2], a.get_pixel(x, y)[0]])
        })
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png),
    };
    result.map_err(|e| ImageError::Write { path: "<png>".into(), detail: e.to_string() })?;
    Ok(out)
}

/// The output size asked for: `scale` (above 0, at most the model's) or a target `width`
/// (the height keeps the aspect ratio), for an input of `w` x `h` that the model enlarges
/// `model_scale` times. `None`: the model's own size.
pub fn output_size(w: u32, h: u32, model_scale: u32, scale: Option<f64>, width: Option<u32>) -> Result<Option<(u32, u32)>, String> {
    let full = (w * model_scale, h * model_scale);
    let size = match (scale, width) {
        (Some(_), Some(_)) => return Err("give an output scale or a target width, not both".into()),
        (None, None) => return Ok(None),
        (Some(s), None) => {
            if !(s > 0.0 && s <= model_scale as f64) {
                return Err(format!("the output scale must be above 0 and at most the model's {model_scale}, not {s}"));
            }
            ((w as f64 * s).round().max(1.0) as u32, (h as f64 * s).round().max(1.0) as u32)
        }
        (None, Some(tw)) => {
            if tw == 0 || tw > full.0 {
                return Err(format!("the target width must be 1 to {} pixels (x{model_scale} of {w}), not {tw}", full.0));
            }
            (tw, ((h as f64 * tw as f64 / w as f64).round().max(1.0) as u32).min(full.1))
        }
    };
    Ok((size != full).then_some(size))
}

/// The model's output (and its alpha) brought down to `size` by Pillow's LANCZOS (Lanczos-3,
/// antialiased, bit-exact with `Image.resize`): a smaller output scale than the model's own
/// keeps its detail without aliasing. Straight alpha is resampled apart from the colour, the
/// same way, so colour under transparent pixels is kept.
pub fn downscale(rgb: &RgbImage, alpha: Option<&GrayImage>, size: (u32, u32)) -> (RgbImage, Option<GrayImage>) {
    use crate::pil_resize::{Filter, resize, resize_gray};
    (resize(rgb, size.0, size.1, Filter::Lanczos), alpha.map(|a| resize_gray(a, size.0, size.1, Filter::Lanczos)))
}

/// Bicubic resize of an 8-bit plane to `width` x `height` (values rounded, clamped).
pub fn resize_bicubic_gray(src: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (w_in, h_in) = (src.width() as usize, src.height() as usize);
    let tx = crate::model::resize::bicubic_taps(w_in, width as usize);
    let ty = crate::model::resize::bicubic_taps(h_in, height as usize);
    // Horizontal pass into floats, then vertical.
    let mut tmp = vec![0f32; h_in * width as usize];
    for y in 0..h_in {
        let row = &src.as_raw()[y * w_in..(y + 1) * w_in];
        for (x, (idx, w)) in tx.iter().enumerate() {
            tmp[y * width as usize + x] = (0..4).map(|k| w[k] * row[idx[k]] as f32).sum();
        }
    }
    GrayImage::from_fn(width, height, |x, y| {
        let (idx, w) = &ty[y as usize];
        let v: f32 = (0..4).map(|k| w[k] * tmp[idx[k] * width as usize + x as usize]).sum();
        image::Luma([(v + 0.5).floor().clamp(0.0, 255.0) as u8])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> RgbImage {
        RgbImage::from_fn(6, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 60, 128]))
    }

    /// A JPEG with an EXIF APP1 segment carrying `orientation`.
    fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec(); // little-endian, IFD at 8, one entry
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn truncated_jpeg_and_webp_are_errors_not_grey_images() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        assert!(decode(&jpeg).is_ok());
        assert!(decode(&jpeg_with_orientation(&img, 6)).is_ok(), "EXIF segments are walked over");
        // Trailing bytes after EOI (common from cameras and editors) are fine.
        assert!(decode(&[&jpeg[..], b"trailer"].concat()).is_ok());
        for cut in [jpeg.len() / 2, jpeg.len() - 2, 30] {
            let e = decode(&jpeg[..cut]).err().expect("a cut-off JPEG must fail");
            assert!(matches!(e, ImageError::Truncated(_)), "{cut}: {e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
        let mut webp = b"RIFF".to_vec();
        webp.extend_from_slice(&1000u32.to_le_bytes());
        webp.extend_from_slice(b"WEBPVP8L");
        webp.extend_from_slice(&[0; 20]);
        let e = decode(&webp).err().unwrap();
        assert!(matches!(e, ImageError::Truncated(_)), "{e}");
    }

    #[test]
    fn exif_orientation_is_applied() {
        let img = photo();
        let upright = decode(&jpeg_with_orientation(&img, 1)).unwrap().rgb;
        assert_eq!(upright.dimensions(), (6, 4));
        let rotated = decode(&jpeg_with_orientation(&img, 6)).unwrap().rgb; // 90° clockwise
        assert_eq!(rotated.dimensions(), (4, 6));
        // The top-left pixel of the rotated image is the bottom-left of the stored one.
        let (a, b) = (rotated.get_pixel(0, 0), upright.get_pixel(0, 3));
        assert!(a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) <= 8), "{a:?} vs {b:?}");
    }

    #[test]
    fn png_and_webp_decode_with_alpha() {
        let rgba = RgbaImage::from_fn(5, 3, |x, y| image::Rgba([x as u8, y as u8, 7, 10 * x as u8]));
        for format in [ImageFormat::Png, ImageFormat::WebP] {
            let mut bytes = Vec::new();
            rgba.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
            let d = decode(&bytes).unwrap();
            assert_eq!(d.rgb.get_pixel(4, 2).0, [4, 2, 7], "{format:?}");
            assert_eq!(d.alpha.expect("alpha").get_pixel(4, 0).0, [40], "{format:?}");
        }
    }

    #[test]
    fn a_huge_header_is_refused_by_its_size() {
        // A valid PNG header claiming 40000x40000 RGBA, and one tiny IDAT chunk.
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&40000u32.to_be_bytes());
        ihdr.extend_from_slice(&40000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let crc = crc32fast::hash(&ihdr);
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0d".to_vec();
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc.to_be_bytes());
        let idat = b"IDAT\x78\x9c\x03\0\0\0\0\x01";
        png.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
        png.extend_from_slice(idat);
        png.extend_from_slice(&crc32fast::hash(idat).to_be_bytes());
        let e = decode(&png).err().unwrap().to_string();
        assert_eq!(e, "the image is 40000x40000 pixels; the largest supported input is 25 megapixels");
    }

    #[test]
    fn gif_is_refused_by_name() {
        let gif = b"GIF89a\x01\0\x01\0\0\0\0;";
        let e = decode(gif).err().unwrap().to_string();
        assert!(e.contains("not supported") || e.contains("not a PNG"), "{e}");
    }

    #[test]
    fn output_sizes() {
        assert_eq!(output_size(10, 6, 4, None, None), Ok(None));
        assert_eq!(output_size(10, 6, 4, Some(4.0), None), Ok(None));
        assert_eq!(output_size(10, 6, 4, Some(2.0), None), Ok(Some((20, 12))));
        assert_eq!(output_size(10, 6, 4, Some(1.5), None), Ok(Some((15, 9))));
        assert_eq!(output_size(10, 6, 4, None, Some(25)), Ok(Some((25, 15))));
        assert_eq!(output_size(10, 6, 4, None, Some(40)), Ok(None));
        assert!(output_size(10, 6, 4, Some(5.0), None).unwrap_err().contains("at most the model's 4"));
        assert!(output_size(10, 6, 4, None, Some(41)).unwrap_err().contains("1 to 40 pixels"));
        assert!(output_size(10, 6, 4, Some(2.0), Some(20)).is_err());
        let rgb = RgbImage::from_pixel(40, 24, image::Rgb([10, 200, 30]));
        let alpha = GrayImage::from_pixel(40, 24, image::Luma([128]));
        let (r, a) = downscale(&rgb, Some(&alpha), (20, 12));
        assert_eq!(r.dimensions(), (20, 12));
        assert!(r.pixels().all(|p| p.0 == [10, 200, 30]) && a.unwrap().pixels().all(|p| p.0 == [128]));
    }

    #[test]
    fn bicubic_of_a_constant_is_the_constant() {
        let a = GrayImage::from_pixel(3, 5, image::Luma([200]));
        let up = resize_bicubic_gray(&a, 12, 20);
        assert!(up.pixels().all(|p| p.0[0] == 200));
    }
}
