//! Serving a coordinator's inbound requests: Raft RPCs go to the local
//! Raft; client requests are answered from the applied configuration
//! (reads) or through the store (writes). Every refusal is a typed
//! [`ServiceError`], so clients decide retries by its kind.

use super::Shared;
use crate::config_store::{ConfigStore, MembershipChange, StoreError};
use crate::state::{Command, CommandResponse};
use factoryos_wire::message::{ClientRequest, ClientResponse, Message};
use factoryos_wire::{FlowVersion, Inbound, ItemType, NodeId, Responder, ServiceError};
use tokio::sync::mpsc;

use crate::client::WATCH_WAIT;

pub(super) async fn serve_inbound<S: ConfigStore>(
    shared: Shared<S>,
    mut inbox: mpsc::Receiver<Inbound>,
) {
    while let Some(item) = inbox.recv().await {
        let Inbound::Request {
            from,
            peer,
            env,
            reply,
        } = item
        else {
            // Coordinators receive no one-way traffic; ignore it.
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            match env.body {
                Message::RaftRequest { rpc, payload } => {
                    let result = shared.store.serve_raft(rpc, payload).await;
                    reply.respond(FlowVersion(0), Message::RaftResponse { result });
                }
                Message::ClientRequest(req) => {
                    let resp = handle_client(&shared, Sender { id: from, peer }, req).await;
                    let version = shared.store.config().borrow().flow.version;
                    reply.respond(version, Message::ClientResponse(resp));
                }
                other => {
                    tracing::debug!(%from, kind = other.kind().name(), "unexpected request");
                    drop::<Responder>(reply);
                }
            }
        });
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotLeader { leader } => ServiceError::not_leader(leader),
            StoreError::Unavailable(reason) => ServiceError::unavailable(reason),
            StoreError::Rejected(reason) => ServiceError::rejected(reason),
        }
    }
}

/// What only the operator may ask, and how the refusal reads.
fn operator_only(req: &ClientRequest) -> Option<&'static str> {
    match req {
        ClientRequest::UpdateRecipe { .. } => Some("update recipes"),
        ClientRequest::AddStage { .. } => Some("add stages"),
        ClientRequest::RemoveStage { .. } => Some("remove stages"),
        ClientRequest::AddCoordinator { .. } | ClientRequest::RemoveCoordinator { .. } => {
            Some("change the coordinators")
        }
        _ => None,
    }
}

/// Who asks: the id on the request, and every id its certificate names.
struct Sender {
    id: NodeId,
    peer: std::sync::Arc<[NodeId]>,
}

impl Sender {
    /// Whether it may register `stage`: its own id, a stage of its host
    /// (its certificate names it), or any for the operator.
    fn speaks_for(&self, stage: NodeId) -> bool {
        self.id == NodeId::OPERATOR || self.id == stage || self.peer.contains(&stage)
    }
}

async fn handle_client<S: ConfigStore>(
    shared: &Shared<S>,
    sender: Sender,
    req: ClientRequest,
) -> ClientResponse {
    let from = sender.id;
    if let Some(what) = operator_only(&req).filter(|_| from != NodeId::OPERATOR) {
        return ClientResponse::Error(ServiceError::forbidden(format!(
            "only the operator may {what}"
        )));
    }
    match req {
        ClientRequest::Register { stage } => {
            if !sender.speaks_for(stage.id) {
                return ClientResponse::Error(ServiceError::forbidden(format!(
                    "node {from} cannot register stage {}",
                    stage.id
                )));
            }
            write(shared, Command::RegisterStage { stage }).await
        }
        ClientRequest::RegisterHost { stages } => {
            let foreign: Vec<String> = stages
                .iter()
                .filter(|s| !sender.speaks_for(s.id))
                .map(|s| s.id.to_string())
                .collect();
            if !foreign.is_empty() {
                return ClientResponse::Error(ServiceError::forbidden(format!(
                    "node {from}'s certificate does not name stages {}",
                    foreign.join(", ")
                )));
            }
            write(shared, Command::RegisterStages { stages }).await
        }
        ClientRequest::ReportSuspect { suspect } => {
            // A host reporting one of its own stages (it saw the stage die
            // while the process lives on) is no neighbour of it: no link to
            // avoid if the probe finds the stage alive after all.
            let reporter = if sender.speaks_for(suspect) {
                suspect
            } else {
                from
            };
            write(shared, Command::ReportSuspect { reporter, suspect }).await
        }
        ClientRequest::UpdateRecipe {
            item,
            recipe,
            if_version,
        } => {
            let cmd = Command::UpdateRecipe {
                item,
                recipe,
                if_version,
            };
            write(shared, cmd).await
        }
        ClientRequest::ReadRecipe { item, linearizable } => {
            read_recipe(shared, item, linearizable).await
        }
        ClientRequest::AddStage { stage } => {
            shared.transport.peers().insert(stage.id, stage.addr);
            write(shared, Command::AddStage { stage }).await
        }
        ClientRequest::RemoveStage { stage } => write(shared, Command::RemoveStage { stage }).await,
        ClientRequest::AddCoordinator { id, addr } => {
            change(shared, MembershipChange::Add { id, addr }).await
        }
        ClientRequest::RemoveCoordinator { id } => {
            change(shared, MembershipChange::Remove { id }).await
        }
        ClientRequest::WatchSlice {
            stage,
            known,
            digest,
        } => watch_slice(shared, stage, known, digest).await,
        ClientRequest::ReadSlice { stage, digest } => {
            let config = shared.store.config().borrow().clone();
            ClientResponse::Slice(shared.slices.answer(config, stage, digest))
        }
        ClientRequest::ReadFlow { linearizable } => read_flow(shared, linearizable).await,
        ClientRequest::Status => ClientResponse::Status(shared.store.status()),
        ClientRequest::Directory => directory(shared),
        ClientRequest::CommitTimings => {
            ClientResponse::CommitTimings(shared.store.commit_timings())
        }
    }
}

/// Answers once the flow is newer than `known`, or after [`WATCH_WAIT`],
/// with `stage`'s slice (only the version if the holder's copy still holds).
async fn watch_slice<S: ConfigStore>(
    shared: &Shared<S>,
    stage: NodeId,
    known: FlowVersion,
    digest: Option<u64>,
) -> ClientResponse {
    let mut rx = shared.store.config();
    let _ = tokio::time::timeout(WATCH_WAIT, rx.wait_for(|c| c.flow.version > known)).await;
    let config = rx.borrow().clone();
    ClientResponse::Slice(shared.slices.answer(config, stage, digest))
}

async fn read_flow<S: ConfigStore>(shared: &Shared<S>, linearizable: bool) -> ClientResponse {
    if linearizable {
        if let Err(e) = shared.store.sync().await {
            return ClientResponse::Error(e.into());
        }
    }
    ClientResponse::Flow(shared.store.config().borrow().flow.clone())
}

/// `item`'s recipe from the applied configuration (after a linearizable
/// sync when asked).
async fn read_recipe<S: ConfigStore>(
    shared: &Shared<S>,
    item: ItemType,
    linearizable: bool,
) -> ClientResponse {
    if linearizable {
        if let Err(e) = shared.store.sync().await {
            return ClientResponse::Error(e.into());
        }
    }
    let config = shared.store.config();
    let recipe = config
        .borrow()
        .spec
        .as_ref()
        .and_then(|s| s.recipe(&item))
        .cloned();
    match recipe {
        Some(r) => ClientResponse::Recipe(r),
        None => ClientResponse::Error(ServiceError::rejected(format!(
            "`{item}` is not a type of the spec"
        ))),
    }
}

/// Every registered stage's address.
fn directory<S: ConfigStore>(shared: &Shared<S>) -> ClientResponse {
    let config = shared.store.config();
    let config = config.borrow();
    ClientResponse::Directory(
        config
            .stages
            .iter()
            .map(|(id, r)| (*id, r.desc.addr))
            .collect(),
    )
}

async fn change<S: ConfigStore>(shared: &Shared<S>, change: MembershipChange) -> ClientResponse {
    match shared.store.change_coordinators(change).await {
        Ok(_) => ClientResponse::Status(shared.store.status()),
        Err(e) => ClientResponse::Error(e.into()),
    }
}

/// Proposes `cmd` and turns the outcome into a client answer.
async fn write<S: ConfigStore>(shared: &Shared<S>, cmd: Command) -> ClientResponse {
    let answer = shared.store.propose(cmd).await;
    let leader = shared.store.leader();
    match answer {
        Ok(CommandResponse::Applied { index }) => ClientResponse::Committed { index, leader },
        Ok(CommandResponse::FlowCommitted { version }) => ClientResponse::Committed {
            index: version.0,
            leader,
        },
        Ok(CommandResponse::Rejected { reason }) => {
            ClientResponse::Error(ServiceError::rejected(reason))
        }
        Err(e) => ClientResponse::Error(e.into()),
    }
}
