//! Images in and out: a File / Blob decoded as the CLI decodes a file, or the pixels of an
//! ImageData / ImageBitmap; a result delivered as a PNG Blob (encoded here) or an ImageData;
//! and the `inspectImage()` export, which reads only an image's size.

use image::{GrayImage, RgbImage};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::glue::{self, get, get_f64, object};
use super::options::{Output, js_error};
use crate::image_io;
use crate::pipeline::Progress;

/// The largest input the browser build accepts (docs/browser.md, "The largest input"): at x4
/// its result and the copies made to deliver it fit a tab's memory with room to spare.
pub const MAX_BROWSER_INPUT_PIXELS: u64 = 4_000_000;

/// RGBA pixels → RGB and an alpha plane (None when fully opaque).
fn split_rgba(image: &JsValue) -> Result<(RgbImage, Option<GrayImage>), String> {
    let px = glue::image_pixels(image).map_err(|e| glue::error_message(&e))?;
    let (w, h) = (get_f64(&px, "width").unwrap_or(0.0), get_f64(&px, "height").unwrap_or(0.0));
    if w < 1.0 || h < 1.0 {
        return Err("the image is empty".into());
    }
    if w * h > MAX_BROWSER_INPUT_PIXELS as f64 {
        return Err(image_io::ImageError::TooLarge { width: w as u32, height: h as u32, max: MAX_BROWSER_INPUT_PIXELS / 1_000_000 }.to_string());
    }
    let data = js_sys::Uint8ClampedArray::new(&get(&px, "data")).to_vec();
    let (w, h) = (w as u32, h as u32);
    if data.len() != (w * h * 4) as usize {
        return Err("the image's pixel data does not match its size".into());
    }
    let rgb = RgbImage::from_fn(w, h, |x, y| {
        let i = ((y * w + x) * 4) as usize;
        image::Rgb([data[i], data[i + 1], data[i + 2]])
    });
    let opaque = data.chunks_exact(4).all(|p| p[3] == 255);
    let alpha = (!opaque).then(|| GrayImage::from_fn(w, h, |x, y| image::Luma([data[((y * w + x) * 4 + 3) as usize]])));
    Ok((rgb, alpha))
}

/// The input as RGB + alpha: a File / Blob decoded here exactly as the CLI decodes a file
/// (EXIF orientation, 16-bit, straight alpha, the header's size checked before any pixel is
/// allocated), or the pixels of an ImageData / ImageBitmap. Also whether it was encoded.
pub(super) async fn read_input(image: &JsValue, progress: &mut dyn FnMut(Progress)) -> Result<(RgbImage, Option<GrayImage>, bool), String> {
    if !glue::is_blob(image) {
        let (rgb, alpha) = split_rgba(image)?;
        return Ok((rgb, alpha, false));
    }
    progress(Progress::new("read", 0, 1));
    let bytes = glue::blob_bytes(image, None).await.map_err(|e| format!("cannot read the file: {}", glue::error_message(&e)))?;
    let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
    let d = image_io::decode_with_limit(&bytes, MAX_BROWSER_INPUT_PIXELS).map_err(|e| e.to_string())?;
    progress(Progress::new("read", 1, 1));
    Ok((d.rgb, d.alpha, true))
}

/// The input's alpha plane at the size of the model's output (bicubic, as the CLI does).
pub(super) fn alpha_like(alpha: Option<GrayImage>, out: &RgbImage) -> Option<GrayImage> {
    alpha.map(|a| image_io::resize_bicubic_gray(&a, out.width(), out.height()))
}

/// The model's output with its alpha (already at the output's size), brought to `size`,
/// as a PNG Blob or an ImageData.
pub(super) fn deliver(rgb: RgbImage, alpha: Option<&GrayImage>, size: Option<(u32, u32)>, output: Output, progress: &mut dyn FnMut(Progress)) -> Result<JsValue, String> {
    let (rgb, smaller) = match size {
        Some(size) => image_io::downscale(&rgb, alpha, size),
        None => (rgb, None),
    };
    let alpha = smaller.as_ref().or(alpha);
    match output {
        Output::Png => {
            progress(Progress::new("write", 0, 1));
            let png = image_io::encode_png(&rgb, alpha).map_err(|e| e.to_string())?;
            progress(Progress::new("write", 1, 1));
            Ok(glue::png_blob(&png))
        }
        Output::ImageData => Ok(image_data(&rgb, alpha)),
    }
}

pub(super) fn image_data(rgb: &RgbImage, alpha: Option<&GrayImage>) -> JsValue {
    let (w, h) = rgb.dimensions();
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for (i, p) in rgb.pixels().enumerate() {
        rgba.extend_from_slice(&p.0);
        rgba.push(alpha.map_or(255, |a| a.as_raw()[i]));
    }
    glue::make_image_data(&rgba, w, h)
}

/// Bytes read for an image's header first: enough for every PNG and WebP header and a JPEG's
/// metadata segments; a JPEG with more before its frame header is read whole.
const HEAD_BYTES: f64 = (1 << 20) as f64;

async fn blob_vec(blob: &JsValue, limit: Option<f64>) -> Result<Vec<u8>, JsValue> {
    let bytes = glue::blob_bytes(blob, limit).await.map_err(|e| js_error(format!("cannot read the file: {}", glue::error_message(&e))))?;
    Ok(js_sys::Uint8Array::new(&bytes).to_vec())
}

/// An image's size, read before any work: a File / Blob's header (`ImageInfo.format` names
/// it), or the width and height of an ImageData / ImageBitmap (or any object with them). Rejects, with the message `upscale` would give,
/// an empty or unknown file and anything over the browser's limit (4 megapixels), so a page
/// can refuse it before loading weights or decoding pixels.
#[wasm_bindgen(js_name = inspectImage, unchecked_return_type = "Promise<ImageInfo>")]
pub fn inspect_image(#[wasm_bindgen(unchecked_param_type = "Blob | ImageData | ImageBitmap | { width: number; height: number }")] image: JsValue) -> js_sys::Promise {
    future_to_promise(async move {
        let (w, h, format) = if glue::is_blob(&image) {
            let head = blob_vec(&image, Some(HEAD_BYTES)).await?;
            let probe = |bytes: &[u8]| image_io::probe(bytes, MAX_BROWSER_INPUT_PIXELS).map(|h| (h.width, h.height, h.format));
            match probe(&head) {
                Err(image_io::ImageError::Corrupt(_)) if glue::blob_size(&image) > HEAD_BYTES => probe(&blob_vec(&image, None).await?),
                r => r,
            }
            .map_err(|e| js_error(e.to_string()))?
        } else {
            let (w, h) = (get_f64(&image, "width").unwrap_or(0.0), get_f64(&image, "height").unwrap_or(0.0));
            if w < 1.0 || h < 1.0 {
                return Err(js_error("upscale() takes a File or Blob (PNG, JPEG or WebP), an ImageData or an ImageBitmap"));
            }
            if w * h > MAX_BROWSER_INPUT_PIXELS as f64 {
                return Err(js_error(
                    image_io::ImageError::TooLarge { width: w as u32, height: h as u32, max: MAX_BROWSER_INPUT_PIXELS / 1_000_000 }.to_string(),
                ));
            }
            (w as u32, h as u32, "pixels")
        };
        Ok(object(&[("width", w.into()), ("height", h.into()), ("format", format.into())]))
    })
}
