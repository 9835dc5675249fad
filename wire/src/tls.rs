//! Cluster certificates and mutual TLS 1.3.
//!
//! * `factoryos certs init` makes a **cluster CA** (`ca.pem`, `ca.key`).
//! * `factoryos certs issue --node N` makes a node certificate (`node-N.pem`,
//!   `node-N.key`) whose only subject alternative name is the DNS name
//!   `nN.factoryos.node`: a node's id *is* its certificate's name.
//! * `factoryos certs issue --host 11-16` makes a **host certificate**
//!   (`host-11.pem`, `host-11.key`, named by its first id) with one such name
//!   per stage the host process speaks for: one endpoint, one key, many ids.
//!   A node certificate is the host certificate of one id.
//! * A server accepts a client only if its certificate chains to the cluster CA
//!   **and** an id in it is in the [`PeerBook`]; the refusal happens inside the
//!   handshake. Which of its ids a host may speak as on a stream is checked by
//!   the transport (see `docs/protocol.md`).
//! * A client dialling node N asks for server name `nN.factoryos.node`, so a
//!   process answering at N's address without N in its certificate is refused
//!   too.
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
/// Version 2: every stream starts with a route header (sender and recipient
/// ids), so that one endpoint can serve many stages.
pub const ALPN: &[u8] = b"factoryos/2";

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
    #[error("a certificate needs at least one node id")]
    NoIds,
    #[error("{path} speaks for {found}, but this process hosts {wanted}; issue the host's certificate with `factoryos certs issue --dir DIR --host {wanted}`")]
    HostMismatch {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("no host certificate {path} for stages {wanted}; issue it with `factoryos certs issue --dir DIR --host {wanted}`", path = .path.display())]
    NoHostCertificate { path: PathBuf, wanted: String },
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The DNS name carried by node `id`'s certificate.
pub fn node_name(id: NodeId) -> String {
    format!("n{}{}", id.0, NAME_SUFFIX)
}

/// Reads the first node id out of a DER certificate's subject alternative
/// names (a node certificate's only one; a host certificate's first stage).
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, CertError> {
    node_ids_of(cert)?
        .first()
        .copied()
        .ok_or(CertError::NoNodeId)
}

/// Every node id a DER certificate speaks for, sorted; an error if none.
pub fn node_ids_of(cert: &CertificateDer<'_>) -> Result<Vec<NodeId>, CertError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|_| CertError::NoNodeId)?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|_| CertError::NoNodeId)?
        .ok_or(CertError::NoNodeId)?;
    let mut ids: Vec<NodeId> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => dns
                .strip_suffix(NAME_SUFFIX)
                .and_then(|n| n.strip_prefix('n'))
                .and_then(|digits| digits.parse().ok())
                .map(NodeId),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(CertError::NoNodeId);
    }
    Ok(ids)
}

/// `11-16` or `11,13`: how a list of ids is written in messages and flags.
fn id_list(ids: &[NodeId]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1].0 == ids[j].0 + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", ids[i].0, ids[j].0)
        } else {
            ids[i].0.to_string()
        });
        i = j + 1;
    }
    parts.join(",")
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
        self.issue_host(&[id])
    }

    /// Issues one certificate and key for a host process speaking for every
    /// id of `ids` (one subject alternative name each).
    pub fn issue_host(&self, ids: &[NodeId]) -> Result<NodeIdentity, CertError> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let first = *ids.first().ok_or(CertError::NoIds)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let mut params =
            rcgen::CertificateParams::new(ids.iter().map(|id| node_name(*id)).collect::<Vec<_>>())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let name = if ids.len() == 1 {
            format!("factoryOS node {first}")
        } else {
            format!("factoryOS host {}", id_list(&ids))
        };
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeIdentity {
            id: first,
            ids,
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
            ca: self.cert_der(),
        })
    }
}

/// A node's or host's credentials: its certificate (carrying its ids), key
/// and the CA.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The id it claims by default (the first of `ids`).
    id: NodeId,
    /// Every id the certificate speaks for, sorted.
    ids: Vec<NodeId>,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Every id the certificate speaks for, sorted (one for a node).
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// File names of node `id`'s certificate and key inside a certs directory.
    pub fn file_names(id: NodeId) -> (String, String) {
        (format!("node-{}.pem", id.0), format!("node-{}.key", id.0))
    }

    /// File names of the certificate and key of the host whose first id is
    /// `first` (a host of one id uses its node files).
    pub fn host_file_names(ids: &[NodeId]) -> Option<(String, String)> {
        let first = ids.iter().min()?;
        Some(if ids.len() == 1 {
            Self::file_names(*first)
        } else {
            (
                format!("host-{}.pem", first.0),
                format!("host-{}.key", first.0),
            )
        })
    }

    /// Writes `node-N.pem` and `node-N.key` (or, for several ids,
    /// `host-N.pem` and `host-N.key`; the key with mode 0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), CertError> {
        create_dir(dir)?;
        let (cert_name, key_name) = Self::host_file_names(&self.ids).ok_or(CertError::NoIds)?;
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
            ids: vec![id],
            cert,
            key_der,
            ca,
        })
    }

    /// Loads the credentials of a host process running the stages `ids`: a
    /// node certificate for one id, the host certificate (`host-N.pem`, N
    /// the first id) for several, which must speak for exactly `ids`.
    pub fn load_host(dir: &Path, ids: &[NodeId]) -> Result<Self, CertError> {
        let mut wanted = ids.to_vec();
        wanted.sort();
        wanted.dedup();
        match wanted.as_slice() {
            [] => return Err(CertError::NoIds),
            [one] => return Self::load(dir, *one),
            _ => {}
        }
        let (cert_name, key_name) = Self::host_file_names(&wanted).ok_or(CertError::NoIds)?;
        let cert_path = dir.join(cert_name);
        if !cert_path.exists() {
            return Err(CertError::NoHostCertificate {
                path: cert_path,
                wanted: id_list(&wanted),
            });
        }
        let ca = pem_file_to_der(&dir.join("ca.pem"), "CA certificate")?;
        let cert = pem_file_to_der(&cert_path, "certificate")?;
        let key_der = pem_file_to_der(&dir.join(key_name), "private key")?.to_vec();
        let found = node_ids_of(&cert)?;
        if found != wanted {
            return Err(CertError::HostMismatch {
                path: cert_path,
                found: id_list(&found),
                wanted: id_list(&wanted),
            });
        }
        Ok(NodeIdentity {
            id: wanted[0],
            ids: wanted,
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
        let ids = node_ids_of(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if !ids.iter().any(|id| self.peers.contains(*id)) {
            tracing::warn!(peer = %id_list(&ids), "refusing a node that is not in the cluster configuration");
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
    fn host_certificates_speak_for_every_stage_and_load_only_as_issued() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("test").unwrap();
        ca.save(dir.path(), false).unwrap();
        let ids = [NodeId(13), NodeId(11), NodeId(12), NodeId(20)];
        let host = ca.issue_host(&ids).unwrap();
        assert_eq!(host.id(), NodeId(11));
        assert_eq!(
            node_ids_of(&host.cert).unwrap(),
            vec![NodeId(11), NodeId(12), NodeId(13), NodeId(20)]
        );
        host.save(dir.path()).unwrap();
        assert!(dir.path().join("host-11.pem").exists());
        let loaded = NodeIdentity::load_host(dir.path(), &ids).unwrap();
        assert_eq!(loaded.ids(), host.ids());
        // Another set of stages under the same first id is refused, with the
        // command that makes the right certificate.
        let err = NodeIdentity::load_host(dir.path(), &[NodeId(11), NodeId(12)]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("speaks for 11-13,20"), "{text}");
        assert!(text.contains("--host 11-12"), "{text}");
        // One id is a node certificate.
        ca.issue(NodeId(5)).unwrap().save(dir.path()).unwrap();
        assert_eq!(
            NodeIdentity::load_host(dir.path(), &[NodeId(5)])
                .unwrap()
                .ids(),
            &[NodeId(5)]
        );
        assert!(matches!(ca.issue_host(&[]), Err(CertError::NoIds)));
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = ClusterCa::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
