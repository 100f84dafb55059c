//! The one way the service builds a Redis client. The cache's client ([`super::Cache::connect`])
//! and the write-behind queue's (`startup::open_queue`) both come from [`redis_client`], so they
//! trust the same servers.
//!
//! * `redis://` is plain TCP; `rediss://` is TLS (rustls), checking the server's certificate and
//!   host name against the public roots compiled in (webpki-roots): ElastiCache's in-transit
//!   encryption presents certificates that chain to them.
//! * `OPONN_REDIS_CA_FILE` names a PEM file of the CA of a self-managed Redis. redis-rs trusts
//!   its certificates *instead of* the public roots (`TlsCertificates::root_cert` replaces the
//!   root store), which is what a private CA wants: no public CA can vouch for that server.
//!   The file is read and checked when the client is built, at start-up, so a missing, unreadable
//!   or certificate-less file stops the process with an error naming the setting, rather than
//!   failing every handshake later (redis-rs alone would accept a file without a certificate
//!   and trust nothing).
//! * One rustls crypto provider for the process ([`install_crypto_provider`]): the dependency
//!   tree enables both aws-lc-rs (reqwest) and ring (mongodb), and with two rustls will not
//!   pick a default; redis-rs builds its TLS configuration from the default, and would panic
//!   at the first `rediss://` connection without one.

use std::path::{Path, PathBuf};

use redis::{ConnectionAddr, TlsCertificates};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

/// A Redis client that cannot be built: the settings are wrong. The messages never carry the
/// URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("REDIS_URL is not a Redis URL")]
    Url(#[source] redis::RedisError),
    #[error("OPONN_REDIS_CA_FILE is set, but REDIS_URL is not a rediss:// (TLS) URL")]
    CaWithoutTls,
    #[error("OPONN_REDIS_CA_FILE={path}: cannot read it")]
    CaUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OPONN_REDIS_CA_FILE={path}: {reason}")]
    CaInvalid { path: PathBuf, reason: String },
}

/// Installs aws-lc-rs as the process's rustls crypto provider, once: later calls, or a
/// provider someone installed before, are kept (no panic, no second provider). `main` calls
/// it first thing; [`redis_client`] calls it too, so a library user (the tests) cannot reach
/// a TLS handshake without it.
pub fn install_crypto_provider() {
    // Err only says a provider is installed already: that one stays.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The Redis client for `settings`: `REDIS_URL`, over TLS for `rediss://`, trusting
/// `OPONN_REDIS_CA_FILE` when it is set. Connects nothing yet.
pub fn redis_client(settings: &RedisSettings) -> Result<redis::Client, ClientError> {
    install_crypto_provider();
    let client = redis::Client::open(settings.url.expose_secret()).map_err(ClientError::Url)?;
    let Some(path) = &settings.ca_file else {
        return Ok(client);
    };
    if !matches!(
        client.get_connection_info().addr(),
        ConnectionAddr::TcpTls { .. }
    ) {
        return Err(ClientError::CaWithoutTls);
    }
    let root_cert = read_certificates(path)?;
    redis::Client::build_with_tls(
        client.get_connection_info().clone(),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .map_err(|error| ClientError::CaInvalid {
        path: path.clone(),
        reason: error.to_string(),
    })
}

/// The PEM at `path`, once it is known to hold at least one certificate and nothing malformed.
fn read_certificates(path: &Path) -> Result<Vec<u8>, ClientError> {
    let pem = std::fs::read(path).map_err(|source| ClientError::CaUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| ClientError::CaInvalid {
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("not a PEM file of certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid(
            "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::time::Duration;

    fn settings(url: &str, ca_file: Option<&Path>) -> RedisSettings {
        RedisSettings {
            url: SecretString::from(url.to_owned()),
            ca_file: ca_file.map(Path::to_owned),
            timeout: Duration::from_millis(100),
            write_timeout: Duration::from_millis(100),
            retry_after: Duration::from_millis(100),
        }
    }

    fn file_with(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "oponn-ca-{}-{:08x}-{name}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_plain_or_tls_url_without_a_ca_file_builds_a_client() {
        redis_client(&settings("redis://127.0.0.1:6379", None)).unwrap();
        redis_client(&settings("rediss://127.0.0.1:6379", None)).unwrap();
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_the_setting() {
        let missing = std::env::temp_dir().join("oponn-no-such-ca.pem");
        let error = redis_client(&settings("rediss://127.0.0.1:6379", Some(&missing)))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("OPONN_REDIS_CA_FILE="), "{error}");
        assert!(error.contains("cannot read"), "{error}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_an_error_naming_the_setting() {
        let path = file_with("not-pem", "this is not a certificate\n");
        let error = redis_client(&settings("rediss://127.0.0.1:6379", Some(&path)))
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_file(&path);
        assert!(error.starts_with("OPONN_REDIS_CA_FILE="), "{error}");
        assert!(error.contains("no certificate"), "{error}");
    }

    #[test]
    fn a_malformed_certificate_is_an_error_naming_the_setting() {
        let path = file_with(
            "bad-pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        );
        let error = redis_client(&settings("rediss://127.0.0.1:6379", Some(&path)))
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_file(&path);
        assert!(error.starts_with("OPONN_REDIS_CA_FILE="), "{error}");
    }

    #[test]
    fn a_ca_file_with_a_plain_url_is_refused() {
        let path = file_with("unused", "");
        let error = redis_client(&settings("redis://127.0.0.1:6379", Some(&path))).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(error, ClientError::CaWithoutTls), "{error}");
    }

    #[test]
    fn installing_the_crypto_provider_twice_does_not_panic() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
