//! Where an MQTT broker is and how to log in: `mqtt://` or `mqtts://` (TLS through rustls), a user
//! name and password, a CA to trust and a client certificate to show.

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// TLS settings of a broker connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsFiles {
    /// PEM file of the CA certificate(s) to trust; none: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM files of a client certificate chain and its private key, for brokers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where a broker is: `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS).
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// Port (default 1883, or 8883 with TLS).
    pub port: u16,
    /// User name and password, if any.
    pub credentials: Option<(String, String)>,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsFiles>,
}

impl BrokerAddress {
    /// Reads a broker URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (rest, None)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (rest, Some(TlsFiles::default()))
        } else {
            return Err(format!(
                "`{url}`: expected mqtt://[user[:password]@]host[:port] (or mqtts:// for TLS)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (user, pass) = cred.split_once(':').unwrap_or((cred, ""));
                (Some((user.to_owned(), pass.to_owned())), hp)
            }
            None => (None, rest),
        };
        let default_port = if tls.is_some() { 8883 } else { 1883 };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
            ),
            None => (hostport, default_port),
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            credentials,
            tls,
        })
    }

    /// The same address logging in as `user` with `password`.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// The same address with TLS settings (a plain `mqtt://` address refuses them: say `mqtts://`).
    pub fn with_tls(mut self, files: TlsFiles) -> Result<Self, String> {
        if self.tls.is_none() {
            return Err(format!(
                "{}:{}: TLS settings need an mqtts:// broker URL",
                self.host, self.port
            ));
        }
        self.tls = Some(files);
        Ok(self)
    }

    /// rumqttc options for a client `id` with a persistent session; reads the TLS files.
    pub fn options(&self, id: &str) -> Result<MqttOptions, String> {
        let mut o = MqttOptions::new(id, &self.host, self.port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(false)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(200);
        if let Some((user, pass)) = &self.credentials {
            o.set_credentials(user, pass);
        }
        if let Some(files) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(client_config(files)?),
            )));
        }
        Ok(o)
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// A rustls client configuration (ring provider) trusting `files.ca_file` or the system's roots.
fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no CA certificates in the system's trust store: set ca_file".into());
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match &files.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(read_certs(cert)?, key)
                .map_err(|e| format!("{}: {e}", cert.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            BrokerAddress::parse("mqtt://127.0.0.1:1884").unwrap(),
            BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1884,
                credentials: None,
                tls: None,
            }
        );
        let a = BrokerAddress::parse("mqtt://lab:s3cret@broker.lab").unwrap();
        assert_eq!(a.port, 1883);
        assert_eq!(a.credentials, Some(("lab".into(), "s3cret".into())));
        let secure = BrokerAddress::parse("mqtts://broker.lab").unwrap();
        assert_eq!((secure.port, secure.tls.is_some()), (8883, true));
        for bad in ["tcp://x", "mqtt://", "mqtt://h:port", "mqtts://"] {
            assert!(BrokerAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(a.with_tls(TlsFiles::default()).is_err());
    }

    #[test]
    fn unreadable_tls_files_are_errors_naming_them() {
        let files = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            client: None,
        };
        let address = BrokerAddress::parse("mqtts://broker.lab")
            .unwrap()
            .with_tls(files)
            .unwrap();
        let e = address.options("x").unwrap_err();
        assert!(e.starts_with("/nonexistent/ca.pem: "), "{e}");
    }
}
