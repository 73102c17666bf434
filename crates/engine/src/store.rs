//! Lease persistence: the [`LeaseStore`] trait and its embedded SQLite implementation.
//!
//! The in-memory lease table is the allocation authority; a store only makes it survive a restart.
//! Changes are queued with [`LeaseStore::put`] / [`LeaseStore::remove`] (cheap, called under the lease
//! lock so the queue order is the table's order) and made durable in batches: everything pending goes
//! into one transaction (group commit). [`LeaseStore::commit`] waits for a change's batch and is called
//! outside the lease lock.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use dhcpssdk::ClientType;
use rusqlite::{params, Connection};

use crate::clock::{from_unix_secs, unix_secs};
use crate::ticker::Ticker;

/// One granted lease (DHCP or BOOTP), as persisted and as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client identity: option 61's bytes when the client sent one, else htype followed by chaddr.
    pub client_id: Vec<u8>,
    /// The hardware type (htype) of the client's last request.
    pub hw_type: u8,
    /// The client hardware address (chaddr, hlen bytes).
    pub hw_address: Vec<u8>,
    /// The host name the client sent (option 12), if any.
    pub host_name: Option<String>,
    /// When the lease expires; `None` = never (infinite lease, BOOTP).
    pub expires: Option<SystemTime>,
    /// DHCP or BOOTP.
    pub client_type: ClientType,
}

/// A lease store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("lease database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A stored row is not a valid lease.
    #[error("lease database {path}: row for {ip}: {what}")]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The row's address.
        ip: Ipv4Addr,
        /// What is wrong with it.
        what: String,
    },
    /// The lock file next to the database is held: another calloutd serves from it.
    #[error("lease database {path}: in use by another process (it holds {lock})")]
    InUse {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file next to the database cannot be opened.
    #[error("lease database {path}: cannot open its lock file {lock}: {source}")]
    LockFile {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The batch holding this change failed to commit.
    #[error("lease database {path}: commit failed: {message}")]
    CommitFailed {
        /// The database file.
        path: PathBuf,
        /// The failure of the batch.
        message: String,
    },
}

pub use calloutd_hooks::CommitTicket;

/// Where leases are persisted. Implementations must be thread-safe.
pub trait LeaseStore: Send + Sync {
    /// Every stored lease (called once, when the engine starts).
    fn load_all(&self) -> Result<Vec<Lease>, StoreError>;
    /// Queues "this lease now exists" (insert or replace by address). Must not do disk I/O: it is called
    /// under the lease lock.
    fn put(&self, lease: Lease) -> CommitTicket;
    /// Queues "no lease on this address any more". Must not do disk I/O.
    fn remove(&self, ip: Ipv4Addr) -> CommitTicket;
    /// Waits until the change `ticket` (and everything queued before it) is durable.
    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError>;
}

/// A lease store that keeps leases in memory only (tests, benchmarks, `--lease-db :memory:`-style
/// runs): every change is "durable" at once, and nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<std::collections::BTreeMap<Ipv4Addr, Lease>>,
    issued: std::sync::atomic::AtomicU64,
}

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `leases` (as if loaded from disk).
    pub fn with_leases(leases: impl IntoIterator<Item = Lease>) -> Self {
        let store = Self::default();
        store
            .lock()
            .extend(leases.into_iter().map(|lease| (lease.ip, lease)));
        store
    }

    fn lock(&self) -> MutexGuard<'_, std::collections::BTreeMap<Ipv4Addr, Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ticket(&self) -> CommitTicket {
        CommitTicket(
            self.issued
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
        )
    }
}

impl LeaseStore for MemoryLeaseStore {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        Ok(self.lock().values().cloned().collect())
    }

    fn put(&self, lease: Lease) -> CommitTicket {
        self.lock().insert(lease.ip, lease);
        self.ticket()
    }

    fn remove(&self, ip: Ipv4Addr) -> CommitTicket {
        self.lock().remove(&ip);
        self.ticket()
    }

    fn commit(&self, _: CommitTicket) -> Result<(), StoreError> {
        Ok(())
    }
}

enum Change {
    Put(Lease),
    Remove(Ipv4Addr),
}

#[derive(Default)]
struct Queue {
    pending: Vec<Change>,
    /// An empty batch buffer kept for reuse.
    spare: Vec<Change>,
    /// The ticket of the last queued change.
    issued: u64,
    /// Every ticket up to this one has been through a transaction.
    committed: u64,
    /// A worker is running a transaction right now.
    committing: bool,
    /// Workers waiting on `done`: with none, the committer skips the wake-up (a futex call per
    /// transaction otherwise).
    waiting: usize,
    /// The last failed batch: its ticket range and error.
    failure: Option<(u64, u64, String)>,
}

/// The embedded SQLite lease store: WAL journal, prepared statements, group commit.
///
/// Group commit without a writer thread: the first worker that waits in [`LeaseStore::commit`] while
/// no transaction runs becomes the committer. It takes every pending change (its own and any queued by
/// other workers meanwhile), commits them in one transaction, then wakes every waiter; workers that
/// arrive during a transaction wait and are covered by the next one. So a single worker pays no thread
/// hand-off, and concurrent workers share one transaction (one WAL write) per batch.
///
/// Durability: `synchronous = NORMAL` in WAL mode, so a committed lease survives a crash of calloutd;
/// a power loss may lose the last batches.
///
/// Checkpoints (copying the WAL back into the database, with an fsync) run on a thread of their
/// own, on a second connection, every [`CHECKPOINT_EVERY`]: SQLite's automatic checkpoint would run
/// inside a commit and stall the worker committing for milliseconds. A lock file next to the
/// database (`<file>.lock`, held with `flock`) keeps a second server off it; the sqlite3 shell can
/// read the database while calloutd runs.
pub struct SqliteLeaseStore {
    path: PathBuf,
    /// The leases stored when the database was opened, until [`LeaseStore::load_all`] hands them
    /// over (kept once, not twice: the engine's table is the live copy).
    loaded: Mutex<Option<Vec<Lease>>>,
    queue: Mutex<Queue>,
    /// Signalled after every transaction.
    done: Condvar,
    /// Used only by the worker that is committing.
    conn: Mutex<Connection>,
    checkpointer: Option<Ticker>,
    /// Held (locked) for as long as the store is open.
    _lock: std::fs::File,
}

/// How often the checkpoint thread copies the WAL back into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Starts the checkpoint thread: a PASSIVE checkpoint (it never waits for, nor blocks, the writer)
/// every [`CHECKPOINT_EVERY`], on a connection of its own. `None` when no thread could be started.
fn start_checkpointer(path: &Path) -> Result<Option<Ticker>, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(1))?;
    let shown = path.display().to_string();
    let checkpoint = move || {
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("lease database {shown}: checkpoint failed: {error}");
        }
    };
    Ok(Ticker::start("lease-checkpoint", CHECKPOINT_EVERY, checkpoint).ok())
}

impl std::fmt::Debug for SqliteLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLeaseStore")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leases (
    ip          INTEGER PRIMARY KEY, -- IPv4 address as a number
    client_id   BLOB NOT NULL,
    hw_type     INTEGER NOT NULL,
    hw_address  BLOB NOT NULL,
    host_name   TEXT,
    expires     INTEGER,             -- Unix seconds; NULL = infinite
    client_type INTEGER NOT NULL     -- DHCP_CLIENT_BOOTP or DHCP_CLIENT_DHCP
);";

const PUT_SQL: &str = "INSERT OR REPLACE INTO leases \
    (ip, client_id, hw_type, hw_address, host_name, expires, client_type) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const REMOVE_SQL: &str = "DELETE FROM leases WHERE ip = ?1";

impl SqliteLeaseStore {
    /// Opens (creating if needed) the lease database at `path` and reads its leases.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let sql_err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let lock = take_lock(&path)?;
        let conn = Connection::open(&path).map_err(sql_err)?;
        // Another process holding the file: give up after a second rather than SQLite's default 5 s.
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(sql_err)?;
        // Each lease commit writes (and checksums) a whole page to the WAL; 1 KiB pages make that a
        // quarter of the default 4 KiB. Takes effect only for a new database (before its first table).
        conn.pragma_update(None, "page_size", 1024)
            .map_err(sql_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql_err)?;
        // The checkpoint thread checkpoints; a commit never does.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sql_err)?;
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        // Prepare once here so a bad schema fails at open, not at the first commit.
        conn.prepare_cached(PUT_SQL).map_err(sql_err)?;
        conn.prepare_cached(REMOVE_SQL).map_err(sql_err)?;
        let loaded = read_leases(&conn, &path)?;
        let checkpointer = start_checkpointer(&path).map_err(sql_err)?;
        if checkpointer.is_none() {
            tracing::warn!(
                "lease database {}: no checkpoint thread; commits checkpoint",
                path.display()
            );
            conn.pragma_update(None, "wal_autocheckpoint", 1000)
                .map_err(sql_err)?;
        }
        Ok(Self {
            path,
            loaded: Mutex::new(Some(loaded)),
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
            conn: Mutex::new(conn),
            checkpointer,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, change: Change) -> CommitTicket {
        let mut queue = self.lock();
        queue.issued += 1;
        queue.pending.push(change);
        CommitTicket(queue.issued)
    }
}

impl LeaseStore for SqliteLeaseStore {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        let opened = self.loaded.lock().unwrap_or_else(|p| p.into_inner()).take();
        match opened {
            Some(leases) => Ok(leases),
            // Asked again: commit what is queued and read the database as it is now.
            None => {
                let issued = self.lock().issued;
                self.commit(CommitTicket(issued))?;
                let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
                read_leases(&conn, &self.path)
            }
        }
    }

    fn put(&self, lease: Lease) -> CommitTicket {
        self.enqueue(Change::Put(lease))
    }

    fn remove(&self, ip: Ipv4Addr) -> CommitTicket {
        self.enqueue(Change::Remove(ip))
    }

    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError> {
        let mut queue = self.lock();
        loop {
            if queue.committed >= ticket.0 {
                return match &queue.failure {
                    Some((low, high, message)) if (*low..=*high).contains(&ticket.0) => {
                        Err(StoreError::CommitFailed {
                            path: self.path.clone(),
                            message: message.clone(),
                        })
                    }
                    _ => Ok(()),
                };
            }
            if queue.committing {
                queue.waiting += 1;
                queue = self.done.wait(queue).unwrap_or_else(|p| p.into_inner());
                queue.waiting -= 1;
                continue;
            }
            // Become the committer for everything pending (this worker's change included).
            queue.committing = true;
            let mut batch = std::mem::take(&mut queue.spare);
            std::mem::swap(&mut batch, &mut queue.pending);
            let high = queue.issued;
            drop(queue);
            let result = {
                let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
                apply_batch(&conn, &batch)
            };
            batch.clear();
            queue = self.lock();
            queue.spare = batch;
            let low = queue.committed + 1;
            queue.committed = high;
            queue.committing = false;
            if let Err(error) = result {
                tracing::error!(
                    "lease database {}: commit failed: {error}",
                    self.path.display()
                );
                queue.failure = Some((low, high, error.to_string()));
            }
            if queue.waiting > 0 {
                // Woken after the unlock, so the waiters do not block on the queue lock at once. A
                // waiter counted here is already inside `wait`: it registered under the lock.
                drop(queue);
                self.done.notify_all();
                queue = self.lock();
            }
        }
    }
}

impl Drop for SqliteLeaseStore {
    fn drop(&mut self) {
        // Commit what nobody waited for (e.g. the last RELEASE).
        let last = CommitTicket(self.lock().issued);
        if let Err(error) = self.commit(last) {
            tracing::error!("{error}");
        }
        drop(self.checkpointer.take());
    }
}

/// Opens and locks `<path>.lock`: held while the store is open, so a second server on the same
/// database fails at once with a clear error.
fn take_lock(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::LockFile {
            path: path.to_path_buf(),
            lock: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_path_buf(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::LockFile {
            path: path.to_path_buf(),
            lock: lock_path,
            source,
        }),
    }
}

/// Reads every stored lease.
fn read_leases(conn: &Connection, path: &Path) -> Result<Vec<Lease>, StoreError> {
    let sql_err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut stmt = conn
        .prepare(
            "SELECT ip, client_id, hw_type, hw_address, host_name, expires, client_type \
             FROM leases ORDER BY ip",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, i64>(6)?,
            ))
        })
        .map_err(sql_err)?;
    let mut leases = Vec::new();
    for row in rows {
        let (ip, client_id, hw_type, hw_address, host_name, expires, client_type) =
            row.map_err(sql_err)?;
        let ip_num = u32::try_from(ip).map_err(|_| StoreError::BadRow {
            path: path.to_path_buf(),
            ip: Ipv4Addr::UNSPECIFIED,
            what: format!("address {ip} is not an IPv4 address"),
        })?;
        let ip = Ipv4Addr::from(ip_num);
        let bad = |what: String| StoreError::BadRow {
            path: path.to_path_buf(),
            ip,
            what,
        };
        let client_type = u32::try_from(client_type)
            .ok()
            .and_then(ClientType::from_code)
            .ok_or_else(|| bad(format!("unknown client type {client_type}")))?;
        let hw_type = u8::try_from(hw_type).map_err(|_| bad(format!("hardware type {hw_type}")))?;
        if hw_address.len() > 16 {
            return Err(bad(format!(
                "hardware address of {} bytes",
                hw_address.len()
            )));
        }
        let expires = match expires {
            None => None,
            Some(secs) => Some(from_unix_secs(
                u64::try_from(secs).map_err(|_| bad(format!("expiry {secs}")))?,
            )),
        };
        leases.push(Lease {
            ip,
            client_id,
            hw_type,
            hw_address,
            host_name,
            expires,
            client_type,
        });
    }
    Ok(leases)
}

fn apply_batch(conn: &Connection, batch: &[Change]) -> rusqlite::Result<()> {
    if batch.len() == 1 {
        // One statement in autocommit mode is its own transaction, committed when it completes: no
        // BEGIN and COMMIT to run (at moderate rates most batches hold a single lease).
        return apply_changes(conn, batch);
    }
    // BEGIN/COMMIT through cached statements: `Connection::transaction` parses their SQL anew for
    // every batch, which profiled as a visible share of a lease commit.
    conn.prepare_cached("BEGIN")?.execute([])?;
    let applied = apply_changes(conn, batch).and_then(|()| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    });
    if applied.is_err() && !conn.is_autocommit() {
        // Leave no half-applied batch open for the next one; the first error is the one to report.
        let _ = conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut rollback| rollback.execute([]));
    }
    applied
}

fn apply_changes(conn: &Connection, batch: &[Change]) -> rusqlite::Result<()> {
    let mut put = conn.prepare_cached(PUT_SQL)?;
    let mut remove = conn.prepare_cached(REMOVE_SQL)?;
    for change in batch {
        match change {
            Change::Put(lease) => {
                let expires = lease
                    .expires
                    .map(|t| i64::try_from(unix_secs(t)).unwrap_or(i64::MAX));
                put.execute(params![
                    u32::from(lease.ip),
                    lease.client_id,
                    lease.hw_type,
                    lease.hw_address,
                    lease.host_name,
                    expires,
                    lease.client_type.code(),
                ])?;
            }
            Change::Remove(ip) => {
                remove.execute(params![u32::from(*ip)])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lease(last: u8) -> Lease {
        Lease {
            ip: Ipv4Addr::new(198, 18, 0, last),
            client_id: vec![1, 2, 3, last],
            hw_type: 1,
            hw_address: vec![2, 0, 0, 0, 0, last],
            host_name: Some(format!("host{last}")),
            expires: Some(from_unix_secs(1_800_000_000 + u64::from(last))),
            client_type: ClientType::Dhcp,
        }
    }

    #[test]
    fn put_remove_commit_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        {
            let store = SqliteLeaseStore::open(&path).unwrap();
            assert!(store.load_all().unwrap().is_empty());
            store.put(lease(10));
            store.put(lease(11));
            let mut infinite = lease(12);
            infinite.expires = None;
            infinite.client_type = ClientType::Bootp;
            store.put(infinite);
            store.remove(Ipv4Addr::new(198, 18, 0, 11));
            // Asked a second time, the store commits what is queued and reads the database.
            assert_eq!(store.load_all().unwrap().len(), 2);
        }
        let store = SqliteLeaseStore::open(&path).unwrap();
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], lease(10));
        assert_eq!(loaded[1].expires, None);
        assert_eq!(loaded[1].client_type, ClientType::Bootp);
    }

    #[test]
    fn a_second_store_cannot_take_an_open_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let first = SqliteLeaseStore::open(&path).unwrap();
        first.commit(first.put(lease(1))).unwrap();
        let second = SqliteLeaseStore::open(&path);
        assert!(
            matches!(second, Err(StoreError::InUse { .. })),
            "opened a database another store holds: {second:?}"
        );
        drop(first);
        assert_eq!(
            SqliteLeaseStore::open(&path)
                .unwrap()
                .load_all()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_checkpoint_thread_writes_commits_back_and_others_can_read_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = SqliteLeaseStore::open(&path).unwrap();
        for last in 1..=50 {
            store.put(lease(last));
        }
        store.commit(CommitTicket(50)).unwrap();
        // Commits never checkpoint (wal_autocheckpoint = 0): only the thread does.
        std::thread::sleep(CHECKPOINT_EVERY * 4);
        // An immutable reader ignores the WAL: it sees what was checkpointed into the file.
        let file = Connection::open_with_flags(
            format!("file:{}?immutable=1", path.display()),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let in_file: i64 = file
            .query_row("SELECT count(*) FROM leases", [], |row| row.get(0))
            .unwrap();
        assert_eq!(in_file, 50, "the commits were not checkpointed");
        // A normal reader (the sqlite3 shell, say) reads while the store is open.
        let reader = Connection::open(&path).unwrap();
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM leases", [], |row| row.get(0))
            .unwrap();
        assert_eq!(seen, 50);
    }

    #[test]
    fn concurrent_commits_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = Arc::new(SqliteLeaseStore::open(&path).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..25u8 {
                        let ticket = store.put(lease(t * 25 + i + 1));
                        store.commit(ticket).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(store);
        let reopened = SqliteLeaseStore::open(&path).unwrap();
        assert_eq!(reopened.load_all().unwrap().len(), 100);
    }
}
