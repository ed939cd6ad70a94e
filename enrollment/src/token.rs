//! Enrollment tokens as a phone receives them: the device listener's URL, the token secret and
//! the fingerprint of the root CA, in one line of text that also fits in a QR code. The phone
//! trusts only a server whose CA has that fingerprint, from its first request on.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "mdm-enroll:1:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this is not an enrollment token (it should start with '{PREFIX}')")]
    NotAToken,
    #[error("the enrollment token is damaged: {0}")]
    Damaged(String),
}

/// What an enrollment token carries.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentInvite {
    /// The device listener, such as `https://mdm.kommun.se:8443`.
    pub url: String,
    /// The single-use secret; only its hash is stored on the server.
    pub secret: String,
    /// SHA-256 of the root CA certificate, lower-case hex.
    pub ca: String,
}

impl std::fmt::Debug for EnrollmentInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentInvite")
            .field("url", &self.url)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl EnrollmentInvite {
    /// A new invite with a fresh random secret.
    pub fn new(url: &str, ca_fingerprint: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        EnrollmentInvite {
            url: url.to_string(),
            secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            ca: ca_fingerprint.to_string(),
        }
    }

    /// The one line of text handed to the phone (and put in the QR code).
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("invite serialises");
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenError::NotAToken)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| TokenError::Damaged(e.to_string()))?;
        let invite: EnrollmentInvite =
            serde_json::from_slice(&json).map_err(|e| TokenError::Damaged(e.to_string()))?;
        let fingerprint_ok =
            invite.ca.len() == 64 && invite.ca.bytes().all(|b| b.is_ascii_hexdigit());
        if !invite.url.starts_with("https://") || !fingerprint_ok || invite.secret.is_empty() {
            return Err(TokenError::Damaged(
                "it lacks an https URL, a CA fingerprint or a secret".into(),
            ));
        }
        Ok(invite)
    }
}

impl EnrollmentInvite {
    /// The token as a QR code in SVG.
    pub fn qr_svg(&self) -> Result<String, TokenError> {
        qr_svg(&self.encode())
    }

    /// The token as a QR code in PNG.
    pub fn qr_png(&self) -> Result<Vec<u8>, TokenError> {
        qr_png(&self.encode())
    }
}

/// `text` as a QR code in SVG.
pub fn qr_svg(text: &str) -> Result<String, TokenError> {
    let code = qrcode::QrCode::new(text).map_err(|e| TokenError::Damaged(e.to_string()))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// `text` as a QR code in PNG (black on white, 8 pixels a module, a 4-module margin).
pub fn qr_png(text: &str) -> Result<Vec<u8>, TokenError> {
    const SCALE: usize = 8;
    const MARGIN: usize = 4;
    let code = qrcode::QrCode::new(text).map_err(|e| TokenError::Damaged(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * MARGIN) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % modules + MARGIN, i / modules + MARGIN);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| TokenError::Damaged(e.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| TokenError::Damaged(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| TokenError::Damaged(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_survives_the_round_trip_and_keeps_its_secret_out_of_debug() {
        let invite = EnrollmentInvite::new("https://127.0.0.1:8443", &"ab".repeat(32));
        let text = invite.encode();
        assert!(text.starts_with("mdm-enroll:1:"));
        assert_eq!(EnrollmentInvite::decode(&text), Ok(invite.clone()));
        assert!(!format!("{invite:?}").contains(&invite.secret));
    }

    #[test]
    fn the_qr_codes_are_an_svg_and_a_png() {
        let invite = EnrollmentInvite::new("https://127.0.0.1:8443", &"ab".repeat(32));
        assert!(invite.qr_svg().expect("svg").contains("<svg"));
        let png = invite.qr_png().expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn other_text_and_damaged_tokens_are_refused() {
        assert_eq!(
            EnrollmentInvite::decode("hello"),
            Err(TokenError::NotAToken)
        );
        assert!(matches!(
            EnrollmentInvite::decode("mdm-enroll:1:!!!"),
            Err(TokenError::Damaged(_))
        ));
        let plain_http = EnrollmentInvite {
            url: "http://mdm".into(),
            secret: "s".into(),
            ca: "ab".repeat(32),
        };
        assert!(EnrollmentInvite::decode(&plain_http.encode()).is_err());
    }
}
