//! The common name (CN) of a client certificate's subject: the principal a
//! client authenticated by mTLS acts as (`User:<CN>`).
//!
//! Only certificates rustls has already verified against the client CA
//! reach this parser; it still treats the bytes as untrusted: a minimal DER
//! walk that checks every length against the bytes left and returns `None`
//! on anything unexpected, never panicking.

/// OID 2.5.4.3 (id-at-commonName), DER-encoded.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One TLV: tag, contents, and the bytes after it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject CN of a DER certificate, if it has one that is UTF-8.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (_, certificate, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(certificate)?;
    let mut fields = tbs;
    // [0] version is optional; then serial, signature, issuer, validity, subject.
    let (tag, _, rest) = tlv(fields)?;
    if tag == 0xa0 {
        fields = rest;
    }
    for _ in 0..4 {
        let (_, _, rest) = tlv(fields)?;
        fields = rest;
    }
    let (_, subject, _) = tlv(fields)?;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (_, set, rest) = tlv(rdns)?;
        rdns = rest;
        let (_, attribute, _) = tlv(set)?;
        let (_, oid, value) = tlv(attribute)?;
        if oid == OID_COMMON_NAME {
            let (_, text, _) = tlv(value)?;
            return std::str::from_utf8(text).ok().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CN of an rcgen certificate is found; truncations never panic.
    #[test]
    fn common_name() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Shoal");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        assert_eq!(subject_common_name(&der).as_deref(), Some("alice"));
        for cut in 0..der.len() {
            let _ = subject_common_name(&der[..cut]);
        }
        assert_eq!(subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
