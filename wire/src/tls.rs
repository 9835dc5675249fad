//! Cluster certificates and mutual TLS 1.3.
//!
//! * `factoryos certs init` makes a **cluster CA** (`ca.pem`, `ca.key`).
//! * `factoryos certs issue --node N` makes a node certificate (`node-N.pem`,
//!   `node-N.key`) whose only subject alternative name is the DNS name
//!   `nN.factoryos.node`: a node's id *is* its certificate's name.
//! * A server accepts a client only if its certificate chains to the cluster CA
//!   **and** the id in it is in the [`PeerBook`]; the refusal happens inside the
//!   handshake.
//! * A client dialling node N asks for server name `nN.factoryos.node`, so a
//!   process answering at N's address with any other id is refused too.
//!
//! Only TLS 1.3 and the `ring` provider are used.

use crate::ids::NodeId;
use crate::peers::PeerBook;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol id of factoryOS over QUIC.
pub const ALPN: &[u8] = b"factoryos/1";

/// The DNS suffix of node names in certificates.
pub const NAME_SUFFIX: &str = ".factoryos.node";

/// Why a certificate could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; pass --force to replace it (every node certificate issued by the old CA stops working)")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: not a valid PEM {what}: {reason}")]
    BadPem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate names no factoryOS node (expected a DNS name nN{NAME_SUFFIX})")]
    NoNodeId,
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The DNS name carried by node `id`'s certificate.
pub fn node_name(id: NodeId) -> String {
    format!("n{}{}", id.0, NAME_SUFFIX)
}

/// Reads the node id out of a DER certificate's subject alternative names.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, CertError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|_| CertError::NoNodeId)?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|_| CertError::NoNodeId)?
        .ok_or(CertError::NoNodeId)?;
    san.value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => dns
                .strip_suffix(NAME_SUFFIX)
                .and_then(|n| n.strip_prefix('n'))
                .and_then(|digits| digits.parse().ok())
                .map(NodeId),
            _ => None,
        })
        .ok_or(CertError::NoNodeId)
}

/// The cluster certificate authority: signs every node certificate.
pub struct ClusterCa {
    cert_pem: String,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A fresh CA with a new key pair.
    pub fn generate(cluster_name: &str) -> Result<Self, CertError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("factoryOS cluster CA ({cluster_name})"),
        );
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| CertError::BadPem {
            path: key_path,
            what: "private key",
            reason: e.to_string(),
        })?;
        // Check the certificate parses now rather than at the first issue.
        rcgen::Issuer::from_ca_cert_pem(&cert_pem, &key).map_err(|e| CertError::BadPem {
            path: cert_path,
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        Ok(ClusterCa { cert_pem, key })
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, refusing to
    /// overwrite an existing CA unless `force`.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), CertError> {
        create_dir(dir)?;
        let cert_path = dir.join("ca.pem");
        if cert_path.exists() && !force {
            return Err(CertError::AlreadyExists { path: cert_path });
        }
        write(&dir.join("ca.key"), &self.key.serialize_pem(), true)?;
        write(&cert_path, &self.cert_pem, false)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        pem_to_der(&self.cert_pem).expect("a CA made or loaded by ClusterCa is valid PEM")
    }

    /// Issues a certificate and key for node `id`.
    pub fn issue(&self, id: NodeId) -> Result<NodeIdentity, CertError> {
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let mut params = rcgen::CertificateParams::new(vec![node_name(id)])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("factoryOS node {id}"));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeIdentity {
            id,
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
            ca: self.cert_der(),
        })
    }
}

/// A node's credentials: its certificate (carrying its id), key and the CA.
#[derive(Clone)]
pub struct NodeIdentity {
    id: NodeId,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// File names of node `id`'s certificate and key inside a certs directory.
    pub fn file_names(id: NodeId) -> (String, String) {
        (format!("node-{}.pem", id.0), format!("node-{}.key", id.0))
    }

    /// Writes `node-N.pem` and `node-N.key` (mode 0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), CertError> {
        create_dir(dir)?;
        let (cert_name, key_name) = Self::file_names(self.id);
        let key_pem = pem_encode("PRIVATE KEY", &self.key_der);
        write(&dir.join(key_name), &key_pem, true)?;
        write(
            &dir.join(cert_name),
            &pem_encode("CERTIFICATE", &self.cert),
            false,
        )
    }

    /// Loads node `id`'s credentials and the CA certificate from `dir`. The
    /// id inside the certificate must be `id`.
    pub fn load(dir: &Path, id: NodeId) -> Result<Self, CertError> {
        let (cert_name, key_name) = Self::file_names(id);
        let ca_path = dir.join("ca.pem");
        let cert_path = dir.join(cert_name);
        let key_path = dir.join(key_name);
        let ca = pem_file_to_der(&ca_path, "CA certificate")?;
        let cert = pem_file_to_der(&cert_path, "certificate")?;
        let key_der = pem_file_to_der(&key_path, "private key")?.to_vec();
        let found = node_id_of(&cert)?;
        if found != id {
            return Err(CertError::BadPem {
                path: cert_path,
                what: "node certificate",
                reason: format!("it names node {found}, not {id}"),
            });
        }
        Ok(NodeIdentity {
            id,
            cert,
            key_der,
            ca,
        })
    }

    /// Replaces the id this identity claims (tests of impersonation only:
    /// the certificate still names the original node).
    #[doc(hidden)]
    pub fn claiming(mut self, id: NodeId) -> Self {
        self.id = id;
        self
    }

    /// A secret derived from this node's private key, stable across restarts:
    /// the QUIC stateless-reset key, so that a restarted node can reset the
    /// connections its previous incarnation held and peers notice at once.
    pub fn reset_secret(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"factoryos stateless reset v1");
        ctx.update(&self.key_der);
        let digest = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, CertError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// The rustls server config: TLS 1.3, client certificates required,
    /// chained to the cluster CA and naming a member of `peers`.
    pub fn server_config(&self, peers: PeerBook) -> Result<rustls::ServerConfig, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = Arc::new(MemberVerifier { inner, peers });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The rustls client config: TLS 1.3, presents this node's certificate,
    /// trusts only the cluster CA.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.cert.clone()], self.key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The server name a client asks for when dialling node `id`.
pub fn server_name(id: NodeId) -> ServerName<'static> {
    ServerName::try_from(node_name(id)).expect("node names are valid DNS names")
}

/// Verifies the chain with webpki, then refuses ids that are not members.
#[derive(Debug)]
struct MemberVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    peers: PeerBook,
}

impl ClientCertVerifier for MemberVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = node_id_of(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if !self.peers.contains(id) {
            tracing::warn!(peer = %id, "refusing a node that is not in the cluster configuration");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes a file atomically (temp file + rename); `secret` files get mode 0600.
fn write(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

fn pem_to_der(text: &str) -> Option<CertificateDer<'static>> {
    pem::parse(text)
        .ok()
        .map(|p| CertificateDer::from(p.into_contents()))
}

fn pem_file_to_der(path: &Path, what: &'static str) -> Result<CertificateDer<'static>, CertError> {
    let text = read(path)?;
    pem::parse(&text)
        .map(|p| CertificateDer::from(p.into_contents()))
        .map_err(|e| CertError::BadPem {
            path: path.to_owned(),
            what,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_node_id() {
        let ca = ClusterCa::generate("test").unwrap();
        let node = ca.issue(NodeId(42)).unwrap();
        assert_eq!(node_id_of(&node.cert).unwrap(), NodeId(42));
        assert!(node_id_of(&ca.cert_der()).is_err(), "the CA names no node");
    }

    #[test]
    fn save_and_load_round_trip_and_check_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("test").unwrap();
        ca.save(dir.path(), false).unwrap();
        assert!(matches!(
            ca.save(dir.path(), false),
            Err(CertError::AlreadyExists { .. })
        ));
        let ca = ClusterCa::load(dir.path()).unwrap();
        ca.issue(NodeId(3)).unwrap().save(dir.path()).unwrap();
        let node = NodeIdentity::load(dir.path(), NodeId(3)).unwrap();
        assert_eq!(node.id(), NodeId(3));
        // A certificate renamed to another node's file is refused on load.
        std::fs::copy(dir.path().join("node-3.pem"), dir.path().join("node-4.pem")).unwrap();
        std::fs::copy(dir.path().join("node-3.key"), dir.path().join("node-4.key")).unwrap();
        let err = NodeIdentity::load(dir.path(), NodeId(4)).unwrap_err();
        assert!(err.to_string().contains("names node n3, not n4"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("node-3.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = ClusterCa::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
