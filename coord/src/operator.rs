//! What an operator does to a running chain that takes more than one call:
//! declaring a new stage. `factoryos stages add` and the harness's
//! add-stage operation both go through [`declare_stage`], so a stage is
//! declared the same way whoever declares it.

use crate::client::{ClientError, CoordClient};
use crate::cluster::{ClusterFile, SetupError};
use crate::spec::StageDecl;
use factoryos_wire::model::StageDescriptor;
use factoryos_wire::{ClusterCa, ItemType, NodeId, NodeIdentity};
use std::net::SocketAddr;
use std::path::PathBuf;

/// What [`declare_stage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The log index of the `AddStage`.
    pub index: u64,
    /// The certificate it issued (none if the stage had one).
    pub issued: Option<PathBuf>,
    /// Whether it added the stage to the cluster's spec file.
    pub added_to_spec: bool,
}

/// Why a stage could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("the cluster file names no spec: a stage's type is declared there")]
    NoSpec,
    #[error("stage {id} is declared in the spec as a `{declared}` stage, not `{asked}`")]
    Conflict {
        id: NodeId,
        declared: ItemType,
        asked: ItemType,
    },
    #[error("the spec has no type `{0}`")]
    UnknownType(ItemType),
    #[error("issuing the stage's certificate needs the CA key (ca.key) in {certs}: {source}")]
    Ca {
        certs: PathBuf,
        source: factoryos_wire::CertError,
    },
    #[error("cannot write the spec file {path}: {source}")]
    SpecFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Declares `decl` to the running cluster: the stage is added to the spec
/// file if it is not there (so its process, and coordinators that restart,
/// know it), gets a certificate if it has none, and is declared with
/// `AddStage` (so coordinators let it connect; the store records the recipe
/// version its type has now). Its process may start afterwards.
pub async fn declare_stage(
    cluster: &ClusterFile,
    client: &CoordClient,
    decl: &StageDecl,
) -> Result<Declared, OperatorError> {
    let added_to_spec = ensure_in_spec(cluster, decl)?;
    let issued = ensure_certificate(cluster, decl.id)?;
    let desc = StageDescriptor {
        id: decl.id,
        item: decl.item.clone(),
        // Not listening yet: it registers its real address when it starts.
        addr: decl.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        // The store sets the version its type's recipe has.
        recipe_version: 0,
        capacity: decl.capacity,
    };
    let index = client.add_stage(desc).await?;
    Ok(Declared {
        index,
        issued,
        added_to_spec,
    })
}

/// Adds `decl` to the spec file unless it is there; whether it added it.
fn ensure_in_spec(cluster: &ClusterFile, decl: &StageDecl) -> Result<bool, OperatorError> {
    let path = cluster.spec.as_ref().ok_or(OperatorError::NoSpec)?;
    let mut chain = cluster.chain()?.ok_or(OperatorError::NoSpec)?;
    if let Some(known) = chain.stages.iter().find(|s| s.id == decl.id) {
        if known.item != decl.item {
            return Err(OperatorError::Conflict {
                id: decl.id,
                declared: known.item.clone(),
                asked: decl.item.clone(),
            });
        }
        return Ok(false);
    }
    if chain.spec.recipe(&decl.item).is_none() {
        return Err(OperatorError::UnknownType(decl.item.clone()));
    }
    chain.stages.push(decl.clone());
    std::fs::write(path, crate::spec::render(&chain)).map_err(|source| {
        OperatorError::SpecFile {
            path: path.clone(),
            source,
        }
    })?;
    // Read back: the id must not clash with a coordinator's.
    cluster.chain()?;
    Ok(true)
}

/// Issues stage `id`'s certificate unless it has one; the path it wrote.
fn ensure_certificate(cluster: &ClusterFile, id: NodeId) -> Result<Option<PathBuf>, OperatorError> {
    let (cert, _) = NodeIdentity::file_names(id);
    let path = cluster.certs.join(cert);
    if path.exists() {
        return Ok(None);
    }
    let ca_error = |source| OperatorError::Ca {
        certs: cluster.certs.clone(),
        source,
    };
    ClusterCa::load(&cluster.certs)
        .map_err(ca_error)?
        .issue(id)
        .map_err(ca_error)?
        .save(&cluster.certs)
        .map_err(ca_error)?;
    Ok(Some(path))
}
