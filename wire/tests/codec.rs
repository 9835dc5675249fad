//! Property tests of the codec: every message round-trips, and no byte
//! string makes the decoder panic.

use factoryos_wire::message::{ClientRequest, ClientResponse, ErrorKind, RaftRpc, ServiceError};
use factoryos_wire::model::{
    ClusterStatus, CommitPhase, Flow, FlowEdge, Liveness, Lot, PhaseTiming, Recipe, StageDescriptor,
};
use factoryos_wire::{
    DecodeError, Envelope, FlowVersion, FrameCodec, ItemType, LotId, Message, MessageKind, NodeId,
    RequestId, SliceUpdate, SnapshotId,
};
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::HashSet;
use std::net::SocketAddr;

fn node() -> impl Strategy<Value = NodeId> {
    any::<u64>().prop_map(NodeId)
}

fn item() -> impl Strategy<Value = ItemType> {
    "[a-z][a-z0-9-]{0,15}".prop_map(ItemType::from)
}

fn lot_id() -> impl Strategy<Value = LotId> {
    (node(), any::<u64>()).prop_map(|(p, s)| LotId::new(p, s))
}

fn lot() -> impl Strategy<Value = Lot> {
    (
        lot_id(),
        item(),
        any::<u32>(),
        vec((lot_id(), any::<u32>()), 0..6),
        any::<u64>(),
    )
        .prop_map(|(id, item, units, genealogy, made_ms)| Lot {
            id,
            item,
            units,
            genealogy,
            made_ms,
        })
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)))
}

fn stage() -> impl Strategy<Value = StageDescriptor> {
    (node(), item(), addr(), any::<u32>(), any::<u32>()).prop_map(
        |(id, item, addr, recipe_version, capacity)| StageDescriptor {
            id,
            item,
            addr,
            recipe_version,
            capacity,
        },
    )
}

fn flow() -> impl Strategy<Value = Flow> {
    let edge =
        (item(), node(), node(), 0u32..=1000).prop_map(|(item, supplier, consumer, share)| {
            FlowEdge {
                item,
                supplier,
                consumer,
                share,
            }
        });
    let recipe = (vec((item(), 1u32..9), 0..3), 1u32..9, any::<u32>()).prop_map(
        |(inputs, yield_units, version)| Recipe {
            inputs: inputs.into_iter().collect(),
            yield_units,
            version,
        },
    );
    (any::<u64>(), vec(edge, 0..8), vec((item(), recipe), 0..3)).prop_map(|(v, edges, recipes)| {
        Flow {
            version: FlowVersion(v),
            edges,
            recipes: recipes.into_iter().collect(),
        }
    })
}

fn liveness() -> impl Strategy<Value = Liveness> {
    prop_oneof![
        Just(Liveness::Alive),
        Just(Liveness::Suspect),
        Just(Liveness::Dead)
    ]
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        stage().prop_map(|stage| ClientRequest::Register { stage }),
        node().prop_map(|suspect| ClientRequest::ReportSuspect { suspect }),
        (node(), any::<u64>(), proptest::option::of(any::<u64>())).prop_map(
            |(stage, v, digest)| ClientRequest::WatchSlice {
                stage,
                known: FlowVersion(v),
                digest
            }
        ),
        (node(), proptest::option::of(any::<u64>()))
            .prop_map(|(stage, digest)| ClientRequest::ReadSlice { stage, digest }),
        any::<bool>().prop_map(|linearizable| ClientRequest::ReadFlow { linearizable }),
        Just(ClientRequest::Status),
        Just(ClientRequest::CommitTimings),
        Just(ClientRequest::Directory),
        (item(), any::<bool>())
            .prop_map(|(item, linearizable)| ClientRequest::ReadRecipe { item, linearizable }),
        (
            item(),
            proptest::collection::btree_map(item(), 1u32..9, 0..3),
            1u32..9,
            any::<u32>()
        )
            .prop_map(
                |(item, inputs, yield_units, version)| ClientRequest::UpdateRecipe {
                    item,
                    recipe: factoryos_wire::model::Recipe {
                        inputs,
                        yield_units,
                        version
                    },
                    if_version: (version % 2 == 0).then_some(version / 2),
                }
            ),
        stage().prop_map(|stage| ClientRequest::AddStage { stage }),
        node().prop_map(|stage| ClientRequest::RemoveStage { stage }),
        (node(), addr()).prop_map(|(id, addr)| ClientRequest::AddCoordinator { id, addr }),
        node().prop_map(|id| ClientRequest::RemoveCoordinator { id }),
    ]
}

fn client_response() -> impl Strategy<Value = ClientResponse> {
    let status = (
        proptest::option::of(node()),
        any::<u64>(),
        vec(node(), 0..5),
        any::<u64>(),
        vec((node(), liveness()), 0..5),
    )
        .prop_map(|(leader, term, members, v, stages)| ClusterStatus {
            leader,
            term,
            member_addrs: members
                .iter()
                .map(|m| (*m, SocketAddr::from(([10, 0, 0, 1], 7101))))
                .collect(),
            members,
            flow_version: FlowVersion(v),
            stages,
        });
    prop_oneof![
        (any::<u64>(), proptest::option::of(node()))
            .prop_map(|(index, leader)| ClientResponse::Committed { index, leader }),
        flow().prop_map(ClientResponse::Flow),
        (flow(), node()).prop_map(|(f, other)| {
            // A stage of the flow, so that the slice has edges.
            let stage = f.edges.first().map_or(other, |e| e.consumer);
            ClientResponse::Slice(SliceUpdate::Changed(Box::new(
                f.slice(stage, f.recipes.keys().next()),
            )))
        }),
        any::<u64>().prop_map(|v| ClientResponse::Slice(SliceUpdate::Unchanged {
            version: FlowVersion(v)
        })),
        status.prop_map(ClientResponse::Status),
        proptest::collection::vec((node(), addr()), 0..4).prop_map(ClientResponse::Directory),
        service_error().prop_map(ClientResponse::Error),
        vec(timing(), 0..4).prop_map(ClientResponse::CommitTimings),
    ]
}

fn timing() -> impl Strategy<Value = PhaseTiming> {
    (
        proptest::sample::select(CommitPhase::ALL.to_vec()),
        any::<(u64, u64, u64, u64)>(),
    )
        .prop_map(|(phase, (samples, p50_us, p99_us, max_us))| PhaseTiming {
            phase,
            samples,
            p50_us,
            p99_us,
            max_us,
        })
}

fn service_error() -> impl Strategy<Value = ServiceError> {
    let kind = prop_oneof![
        proptest::option::of(node()).prop_map(|leader| ErrorKind::NotLeader { leader }),
        Just(ErrorKind::Unavailable),
        Just(ErrorKind::Rejected),
        Just(ErrorKind::Forbidden),
    ];
    (kind, ".{0,40}").prop_map(|(kind, reason)| ServiceError { kind, reason })
}

fn message() -> impl Strategy<Value = Message> {
    let rpc = prop_oneof![
        Just(RaftRpc::AppendEntries),
        Just(RaftRpc::Vote),
        Just(RaftRpc::InstallSnapshot),
        Just(RaftRpc::ClientWrite),
        Just(RaftRpc::ReadIndex)
    ];
    prop_oneof![
        (any::<u64>(), item()).prop_map(|(r, item)| Message::RequestBatch {
            req: RequestId(r),
            item
        }),
        (proptest::option::of(any::<u64>()), lot()).prop_map(|(r, lot)| Message::BatchSent {
            req: r.map(RequestId),
            lot
        }),
        (any::<u64>(), item()).prop_map(|(r, item)| Message::BatchUnavailable {
            req: RequestId(r),
            item
        }),
        lot_id().prop_map(|lot| Message::WaitingForBatch { lot }),
        lot_id().prop_map(|lot| Message::DeliveryConfirmed { lot }),
        any::<u64>().prop_map(|seq| Message::Heartbeat { seq }),
        (any::<u64>(), node()).prop_map(|(s, initiator)| Message::SnapshotMarker {
            snapshot: SnapshotId(s),
            initiator
        }),
        client_request().prop_map(Message::ClientRequest),
        client_response().prop_map(Message::ClientResponse),
        (rpc, vec(any::<u8>(), 0..256))
            .prop_map(|(rpc, payload)| Message::RaftRequest { rpc, payload }),
        prop_oneof![
            vec(any::<u8>(), 0..256).prop_map(Ok),
            service_error().prop_map(Err)
        ]
        .prop_map(|result| Message::RaftResponse { result }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (node(), any::<u64>(), message())
        .prop_map(|(s, v, body)| Envelope::new(s, FlowVersion(v), body))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_message_round_trips(env in envelope()) {
        let codec = FrameCodec::default();
        let frame = codec.encode(&env).unwrap();
        prop_assert_eq!(codec.decode(&frame).unwrap(), env);
    }

    #[test]
    fn any_prefix_of_a_frame_is_truncated(env in envelope(), cut in any::<prop::sample::Index>()) {
        let codec = FrameCodec::default();
        let frame = codec.encode(&env).unwrap();
        let cut = cut.index(frame.len());
        let is_truncated = matches!(codec.decode(&frame[..cut]), Err(DecodeError::Truncated { .. }));
        prop_assert!(is_truncated);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let codec = FrameCodec::new(256);
        let _ = codec.decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(body in vec(any::<u8>(), 0..512)) {
        let codec = FrameCodec::default();
        let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(factoryos_wire::FORMAT_VERSION);
        frame.extend(&body);
        let _ = codec.decode(&frame);
    }
}

/// The strategy covers every message kind (so a new kind cannot go untested).
#[test]
fn the_strategy_reaches_every_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let mut seen = HashSet::new();
    for _ in 0..5_000 {
        seen.insert(strategy.new_tree(&mut runner).unwrap().current().kind());
    }
    for kind in MessageKind::ALL {
        assert!(seen.contains(&kind), "{} never generated", kind.name());
    }
}
