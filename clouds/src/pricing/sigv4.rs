//! AWS Signature Version 4 for the Pricing API: SHA-256, HMAC-SHA256, the canonical request, the
//! string to sign and the `Authorization` header, implemented here (no signing dependency).
//!
//! Credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! optionally `AWS_SESSION_TOKEN`). The secret key is never printed: [`SigV4Signer`]'s `Debug`
//! shows only the access key id.

use std::time::{SystemTime, UNIX_EPOCH};

use super::AwsSigner;

/// SHA-256 of `data` (FIPS 180-4).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// HMAC-SHA256 of `msg` under `key` (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let ih = sha256(&inner);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&ih);
    sha256(&outer)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` of a UNIX time (UTC).
pub fn amz_date(unix_secs: u64) -> String {
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    predictive_engine::civil::CivilTime::from_unix(secs).to_basic()
}

/// One request to sign.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute path (`/`).
    pub path: &'a str,
    /// Canonical query string (already sorted and encoded; empty for none).
    pub query: &'a str,
    /// Headers to sign, any case; `host` and `x-amz-date` must be among them.
    pub headers: &'a [(String, String)],
    /// The request body.
    pub body: &'a [u8],
}

/// Credentials and scope of a SigV4 signature.
#[derive(Clone)]
pub struct SigV4Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SigV4Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl SigV4Credentials {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; `None` when
    /// the first two are not both set.
    pub fn from_env() -> Option<SigV4Credentials> {
        let id = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|s| !s.is_empty())?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .filter(|s| !s.is_empty())?;
        Some(SigV4Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: std::env::var("AWS_SESSION_TOKEN")
                .ok()
                .filter(|s| !s.is_empty()),
        })
    }
}

/// The canonical request of SigV4 and its signed-headers list.
pub fn canonical_request(req: &SignRequest<'_>) -> (String, String) {
    let mut hs: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    hs.sort();
    let canon_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let cr = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        req.query,
        canon_headers,
        signed,
        hex(&sha256(req.body))
    );
    (cr, signed)
}

/// The `Authorization` header value of `req` signed at `amz_date` (`YYYYMMDDTHHMMSSZ`) for
/// `region` and `service`.
pub fn authorization(
    creds: &SigV4Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &SignRequest<'_>,
) -> String {
    let (cr, signed) = canonical_request(req);
    let day = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&sha256(cr.as_bytes()))
    );
    let k_date = hmac_sha256(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        day.as_bytes(),
    );
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let sig = hex(&hmac_sha256(&k_signing, sts.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
        creds.access_key_id
    )
}

/// Signs the `GetProducts` POSTs of [`super::fetch_aws`] with SigV4 (service `pricing`).
pub struct SigV4Signer {
    creds: SigV4Credentials,
    region: String,
    host: String,
    path: String,
    clock: Box<dyn Fn() -> SystemTime + Send + Sync>,
}

impl std::fmt::Debug for SigV4Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Signer")
            .field("creds", &self.creds)
            .field("region", &self.region)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl SigV4Signer {
    /// A signer for POSTs to `endpoint` (its host and path are signed) in the Pricing API
    /// `region` (`us-east-1`, `eu-central-1` or `ap-south-1`), with the system clock.
    pub fn new(creds: SigV4Credentials, endpoint: &str, region: &str) -> SigV4Signer {
        let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
        let rest = rest.split('?').next().unwrap_or(rest);
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        SigV4Signer {
            creds,
            region: region.to_string(),
            host: host.to_string(),
            path: path.to_string(),
            clock: Box::new(SystemTime::now),
        }
    }

    /// The same signer with an injected clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }
}

impl AwsSigner for SigV4Signer {
    fn sign(&self, body: &[u8]) -> Vec<(String, String)> {
        let secs = (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let date = amz_date(secs);
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            ("host".to_string(), self.host.clone()),
            ("x-amz-date".to_string(), date.clone()),
            (
                "x-amz-target".to_string(),
                "AWSPriceListService.GetProducts".to_string(),
            ),
        ];
        if let Some(t) = &self.creds.session_token {
            headers.push(("x-amz-security-token".to_string(), t.clone()));
        }
        let auth = authorization(
            &self.creds,
            &self.region,
            "pricing",
            &date,
            &SignRequest {
                method: "POST",
                path: &self.path,
                query: "",
                headers: &headers,
                body,
            },
        );
        let mut out = vec![("X-Amz-Date".to_string(), date)];
        if let Some(t) = &self.creds.session_token {
            out.push(("X-Amz-Security-Token".to_string(), t.clone()));
        }
        out.push(("Authorization".to_string(), auth));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_should_match_the_fips_examples() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn hmac_should_match_rfc_4231_case_2() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn amz_date_should_format_utc() {
        // 2015-08-30T12:36:00Z, the date of the AWS SigV4 test suite.
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
    }

    fn suite_creds() -> SigV4Credentials {
        SigV4Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// `get-vanilla` and `post-vanilla` of the published AWS SigV4 test suite.
    #[test]
    fn signature_should_match_the_aws_test_suite() {
        let headers = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
        ];
        let get = SignRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let (cr, signed) = canonical_request(&get);
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            hex(&sha256(cr.as_bytes())),
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authorization(
                &suite_creds(),
                "us-east-1",
                "service",
                "20150830T123600Z",
                &get
            ),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        let post = SignRequest {
            method: "POST",
            ..get
        };
        assert!(authorization(
            &suite_creds(),
            "us-east-1",
            "service",
            "20150830T123600Z",
            &post
        )
        .ends_with("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
    }

    #[test]
    fn signer_should_sign_host_date_and_target_and_hide_the_secret() {
        let s = SigV4Signer::new(suite_creds(), "http://127.0.0.1:8080/", "us-east-1")
            .with_clock(|| UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160));
        let h = s.sign(b"{}");
        let auth = &h.iter().find(|(k, _)| k == "Authorization").unwrap().1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/pricing/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        ));
        assert!(h
            .iter()
            .any(|(k, v)| k == "X-Amz-Date" && v == "20150830T123600Z"));
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("EXAMPLEKEY") && !auth.contains("EXAMPLEKEY"),
            "{dbg}"
        );
    }
}
