//! The one TLS setup of every GETLOOD client: rustls with the ring provider, no OpenSSL.
//!
//! * [`install_crypto_provider`] makes ring the process-wide rustls provider. reqwest is built
//!   with `rustls-no-provider` and panics when a client is built before a provider is
//!   installed, so every client goes through [`http_client_builder`], which installs it first.
//! * [`CaFile`] reads a PEM bundle of CA certificates (the `*.ca_file` settings), refusing a
//!   file that holds no certificate, so a wrong path or a key file is named at start.
//!
//! Which roots a client trusts: the system store (`/etc/ssl/certs`, `SSL_CERT_FILE`), or, when
//! a CA file is configured, only the CAs of that file.

use std::path::{Path, PathBuf};

use getlood_config::ConfigError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CA file holds no certificate.
    #[error("CA file {} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The CA file is not valid PEM.
    #[error("CA file {} is not a valid PEM bundle: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The CA file cannot be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Makes ring the process-wide rustls provider, unless one is installed already. Idempotent and
/// cheap; called by every client constructor, and by a program before it builds a plain
/// `reqwest::Client` of its own (tests, benches).
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A PEM bundle of CA certificates, read from a file.
#[derive(Clone)]
pub struct CaFile {
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's bytes (PEM), for clients that take the bundle as text (redis).
    pub pem: Vec<u8>,
    /// The certificates (DER), at least one.
    pub certs: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile").field("path", &self.path).field("certs", &self.certs.len()).finish()
    }
}

impl CaFile {
    /// Reads and parses `path`; fails if it cannot be read, is not PEM, or holds no certificate.
    pub fn read(path: &Path) -> Result<Self> {
        let pem = std::fs::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Pem { path: path.to_owned(), message: e.to_string() })?;
        if certs.is_empty() {
            return Err(Error::NoCertificate { path: path.to_owned() });
        }
        Ok(Self { path: path.to_owned(), pem, certs })
    }
}

/// Checks the CA file setting `key` at start: the file must be readable and hold at least one
/// PEM certificate.
pub fn check_ca_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    CaFile::read(path).map(drop).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

/// A `reqwest` client builder with TLS set up: the ring provider installed, and the roots either
/// the system's or, with `ca_file`, only that file's CAs. Hostnames are always verified.
pub fn http_client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder> {
    install_crypto_provider();
    let builder = reqwest::Client::builder().tls_backend_rustls();
    let Some(path) = ca_file else { return Ok(builder) };
    let ca = CaFile::read(path)?;
    let certs = ca
        .certs
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem { path: path.to_owned(), message: e.to_string() })?;
    Ok(builder.tls_certs_only(certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("getlood-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = check_ca_file("mindsdb.ca_file", &missing).unwrap_err().to_string();
        assert!(err.contains("mindsdb.ca_file") && err.contains("missing.pem"), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = CaFile::read(&empty).unwrap_err();
        assert!(matches!(err, Error::NoCertificate { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clients_build_with_and_without_the_system_roots() {
        http_client_builder(None).unwrap().build().unwrap();
        // A plain client built afterwards finds the provider installed and does not panic.
        reqwest::Client::new();
    }
}
