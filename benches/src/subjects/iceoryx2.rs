//! iceoryx2 0.10 (Eclipse): a blackboard (key-value entries in shared memory, one writer,
//! wait-free readers) for the read cases and `seqlock_1w1r`, and two event services for
//! the ping-pong. Every process makes its own node (children after `fork`), with signal
//! handling off so that the harness keeps its own Ctrl-C handling.

use std::hint::black_box;
use std::time::Duration;

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::reader::EntryHandle;
use iceoryx2::prelude::{ipc, Node, NodeBuilder, ServiceName, SignalHandlingMode};
use iceoryx2::service::port_factory::blackboard::PortFactory as Blackboard;

use super::{read_4k_batch, show, side, timed, Case, Payload, Setup, PAGE};
use crate::affinity::CorePair;
use crate::cleanup::unique_tag;
use crate::contended::{Pair, WRITER};
use crate::measure::Batch;
use crate::pingpong::{ping_pong, Channel, End, PINGER};

/// The blackboard's key type; every blackboard here has the one entry `0`.
type Key = u64;

fn show_debug(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

fn node() -> Result<Node<ipc::Service>, String> {
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(show_debug)
}

fn service_name(name: &str) -> Result<ServiceName, String> {
    ServiceName::new(name).map_err(show_debug)
}

/// A blackboard with the entry `0` holding a `T`, and the node that made it.
struct Board<T> {
    name: String,
    // Declared first: the service goes before its node.
    service: Blackboard<ipc::Service, Key>,
    _node: Node<ipc::Service>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy + iceoryx2::prelude::ZeroCopySend + 'static> Board<T> {
    fn create(tag: &str, value: T) -> Result<Self, String> {
        let name = unique_tag(tag);
        let node = node()?;
        let service = node
            .service_builder(&service_name(&name)?)
            .blackboard_creator::<Key>()
            .add::<T>(0, value)
            .create()
            .map_err(show_debug)?;
        Ok(Self {
            name,
            service,
            _node: node,
            _t: std::marker::PhantomData,
        })
    }

    fn reader(&self) -> Result<EntryHandle<ipc::Service, Key, T>, String> {
        let reader = self.service.reader_builder().create().map_err(show_debug)?;
        reader.entry::<T>(&0).map_err(show_debug)
    }
}

/// A process's own view of a blackboard: its node, the opened service, and an entry.
struct Opened<E> {
    // Declared first: dropped before the service and node.
    entry: E,
    _service: Blackboard<ipc::Service, Key>,
    _node: Node<ipc::Service>,
}

fn open(name: &str) -> Result<(Node<ipc::Service>, Blackboard<ipc::Service, Key>), String> {
    let node = node()?;
    let service = node
        .service_builder(&service_name(name)?)
        .blackboard_opener::<Key>()
        .open()
        .map_err(show_debug)?;
    Ok((node, service))
}

struct BoardPair {
    board: Board<u64>,
}

impl Pair for BoardPair {
    fn worker(&self, role: usize) -> Result<Batch<'_>, String> {
        let (node, service) = open(&self.board.name)?;
        if role == WRITER {
            let writer = service.writer_builder().create().map_err(show_debug)?;
            let entry = writer.entry::<u64>(&0).map_err(show_debug)?;
            let w = Opened {
                entry: (entry, writer),
                _service: service,
                _node: node,
            };
            Ok(side::<u64>(
                role,
                move |v| w.entry.0.update_with_copy(v),
                || unreachable!("the writer only writes"),
            ))
        } else {
            let reader = service.reader_builder().create().map_err(show_debug)?;
            let entry = reader.entry::<u64>(&0).map_err(show_debug)?;
            let r = Opened {
                entry: (entry, reader),
                _service: service,
                _node: node,
            };
            Ok(side::<u64>(
                role,
                |_| unreachable!("the reader only reads"),
                move || *r.entry.0.get(),
            ))
        }
    }
}

/// Two event services, `ping` (the harness notifies, the child listens) and `pong`.
struct EventChannel {
    ping: String,
    pong: String,
    // Declared first: the services go before their node.
    _services: [iceoryx2::service::port_factory::event::PortFactory<ipc::Service>; 2],
    _node: Node<ipc::Service>,
}

struct EventEnd {
    // Declared first: the ports go before the node.
    notifier: Notifier<ipc::Service>,
    listener: Listener<ipc::Service>,
    _node: Node<ipc::Service>,
}

impl End for EventEnd {
    fn send(&mut self) -> Result<(), String> {
        self.notifier.notify().map(drop).map_err(show_debug)
    }

    fn recv(&mut self, timeout: Duration) -> Result<bool, String> {
        let n = self
            .listener
            .timed_wait(|_| {}, timeout)
            .map_err(show_debug)?;
        Ok(n > 0)
    }
}

impl Channel for EventChannel {
    fn end(&self, role: usize) -> Result<Box<dyn End>, String> {
        let node = node()?;
        let (send, recv) = if role == PINGER {
            (&self.ping, &self.pong)
        } else {
            (&self.pong, &self.ping)
        };
        let open = |name: &str| {
            node.service_builder(&service_name(name)?)
                .event()
                .open()
                .map_err(show_debug)
        };
        let notifier = open(send)?
            .notifier_builder()
            .create()
            .map_err(show_debug)?;
        let listener = open(recv)?
            .listener_builder()
            .create()
            .map_err(show_debug)?;
        Ok(Box::new(EventEnd {
            notifier,
            listener,
            _node: node,
        }))
    }
}

fn event_setup(cores: CorePair) -> Result<Setup, String> {
    let node = node()?;
    let ping = unique_tag("ping");
    let pong = unique_tag("pong");
    let create = |name: &str| {
        node.service_builder(&service_name(name)?)
            .event()
            .create()
            .map_err(show_debug)
    };
    let services = [create(&ping)?, create(&pong)?];
    let batch = ping_pong(
        EventChannel {
            ping,
            pong,
            _services: services,
            _node: node,
        },
        cores.second,
    )?;
    Ok(Setup::Timed(batch))
}

/// Builds what iceoryx2 runs for `case`.
///
/// # Errors
///
/// A message saying why making the node, service or port failed.
pub fn setup(case: Case, cores: CorePair) -> Result<Setup, String> {
    match case {
        Case::ReadU64 => {
            let board = Board::create("r8", 7u64)?;
            let entry = board.reader()?;
            timed(move |n| {
                let _board = &board;
                for _ in 0..n {
                    black_box(*entry.get());
                }
            })
        }
        Case::Read4k => {
            let board = Board::create("r4k", <[u8; PAGE]>::initial())?;
            let entry = board.reader()?;
            read_4k_batch(move || {
                let _board = &board;
                *entry.get()
            })
        }
        Case::Write4k => {
            let board = Board::create("w4k", [0u8; PAGE])?;
            let writer = board.service.writer_builder().create().map_err(show)?;
            let entry = writer.entry::<[u8; PAGE]>(&0).map_err(show)?;
            let v = <[u8; PAGE]>::initial();
            timed(move |n| {
                let _keep = (&board, &writer);
                for _ in 0..n {
                    entry.update_with_copy(black_box(v));
                }
            })
        }
        Case::Seqlock1w1r => Ok(Setup::SoloAndPair(Box::new(BoardPair {
            board: Board::create("1w1r", u64::initial())?,
        }))),
        Case::NotifyRoundtrip => event_setup(cores),
        Case::Contended8b | Case::Contended4k => Ok(Setup::Unsupported(
            "one writer per blackboard and wait-free readers: its two-process figures are in \
             seqlock_1w1r",
        )),
        Case::CreateDrop | Case::AttachDetach => Ok(Setup::Unsupported(
            "not measured: a service (node, config, shared memory) is not a segment",
        )),
        Case::Inplace64m => Ok(Setup::Unsupported(
            "not measured: blackboard values are small copies (a loan writes in place, but a \
             64 MiB entry is not what it is for)",
        )),
        Case::SliceRead1m => Ok(Setup::Unsupported(
            "no slices on a blackboard: an entry is one fixed-size value, read by value",
        )),
        Case::Takeover => Ok(Setup::Unsupported(
            "no lock to take over: one writer per blackboard, and readers never block",
        )),
    }
}
