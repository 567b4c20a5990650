//! The registry of emulated sessions: which HTTP-streaming or SSE connection a session id
//! names, and the bounded queue of command frames `/emulation` feeds it (`emulation.rs`). Kept
//! apart from the handler so the node's state can hold it without depending on the handler.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Every emulated session on this node, by session id.
#[derive(Default)]
pub struct Sessions {
    queues: Mutex<HashMap<Arc<str>, mpsc::Sender<Vec<u8>>>>,
}

/// A session's place in [`Sessions`]; dropping it unregisters the session.
pub struct Registration {
    sessions: Arc<Sessions>,
    id: Arc<str>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.queues.lock().remove(&self.id);
    }
}

impl Registration {
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }
}

impl Sessions {
    /// Register a new session with a random id and a queue of `capacity` frames, which its
    /// connection's driver reads commands from.
    pub fn register(sessions: &Arc<Sessions>, capacity: usize) -> (Registration, mpsc::Receiver<Vec<u8>>) {
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        let (sender, receiver) = mpsc::channel(capacity);
        sessions.queues.lock().insert(id.clone(), sender);
        (Registration { sessions: sessions.clone(), id }, receiver)
    }

    /// The queue of a registered session.
    pub fn sender(&self, session: &str) -> Option<mpsc::Sender<Vec<u8>>> {
        self.queues.lock().get(session).cloned()
    }
}
