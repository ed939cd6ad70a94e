//! Which phones have commands waiting, kept by each node so that a check-in asks the database
//! for commands only when there may be some: most check-ins find none, and check-ins are the
//! busiest requests.
//!
//! The board is read from the database at start and every few seconds (commands queued on other
//! nodes show up within that time, well inside a phone's check-in interval); a command queued
//! on this node is marked at once. A phone on the board may turn out to have nothing due (a
//! not-now pause, say): then its check-in costs one indexed read, as before.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{Store, StoreResult};

pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Board {
    devices: HashSet<i64>,
    /// Marked since the current refresh began reading: the read may have missed them.
    marked_during_refresh: Vec<i64>,
    /// The board has been read at least once.
    loaded: bool,
    /// Marked since the pusher last looked: iPhones among them are woken through APNs (phones
    /// of other kinds are skipped there). A set, so a burst of commands makes one push.
    to_wake: HashSet<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct CommandBoard {
    board: Arc<Mutex<Board>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
    woken: Arc<tokio::sync::Notify>,
}

impl CommandBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the phone may have commands waiting. Until the board is first read, every phone
    /// may.
    pub fn may_have(&self, device_id: i64) -> bool {
        let board = self.lock();
        !board.loaded || board.devices.contains(&device_id)
    }

    /// Notes a command queued on this node (after it is stored).
    pub fn mark(&self, device_id: i64) {
        let mut board = self.lock();
        board.devices.insert(device_id);
        board.marked_during_refresh.push(device_id);
        board.to_wake.insert(device_id);
        drop(board);
        self.woken.notify_one();
    }

    /// Asks for these phones to be woken (they have something to collect that the queue does
    /// not hold, such as a new profile).
    pub fn wake(&self, device_ids: impl IntoIterator<Item = i64>) {
        self.lock().to_wake.extend(device_ids);
        self.woken.notify_one();
    }

    /// Waits until a phone has been marked since the last [`CommandBoard::take_wakes`].
    pub async fn marked(&self) {
        self.woken.notified().await;
    }

    /// The phones marked since the last call, to be woken.
    pub fn take_wakes(&self) -> Vec<i64> {
        self.lock().to_wake.drain().collect()
    }

    /// Reads the board from the database.
    pub async fn refresh(&self, store: &dyn Store) -> StoreResult<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        self.lock().marked_during_refresh.clear();
        let waiting = store.devices_with_pending_commands().await?;
        let mut board = self.lock();
        let mut devices: HashSet<i64> = waiting.into_iter().collect();
        devices.extend(board.marked_during_refresh.drain(..));
        board.devices = devices;
        board.loaded = true;
        Ok(())
    }

    pub async fn run(self, store: Arc<dyn Store>, stop: tokio::sync::watch::Receiver<bool>) {
        crate::clock::repeat(
            REFRESH_EVERY,
            stop,
            "reading which phones have commands",
            || self.refresh(store.as_ref()),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_first_read_every_phone_may_have_commands_and_marks_count_at_once() {
        let board = CommandBoard::default();
        assert!(board.may_have(7));
        {
            let mut b = board.lock();
            b.loaded = true;
        }
        assert!(!board.may_have(7));
        board.mark(7);
        assert!(board.may_have(7));
    }

    #[test]
    fn a_burst_of_marks_for_one_phone_is_one_wake() {
        let board = CommandBoard::default();
        board.mark(7);
        board.mark(7);
        board.mark(8);
        let mut wakes = board.take_wakes();
        wakes.sort_unstable();
        assert_eq!(wakes, vec![7, 8]);
        assert!(board.take_wakes().is_empty());
    }
}
