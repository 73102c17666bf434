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
use rusqlite::types::{FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, Connection, Row};

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
    /// The scope policy the lease was granted under (Microsoft's `PolicyName`): renewals keep its
    /// decisions, also after a restart (docs/dhcp.md section 2).
    pub policy_name: Option<String>,
}

impl Lease {
    /// The lease as a borrowed [`LeaseRow`].
    pub fn row(&self) -> LeaseRow<'_> {
        LeaseRow {
            ip: self.ip,
            client_id: &self.client_id,
            hw_type: self.hw_type,
            hw_address: &self.hw_address,
            host_name: self.host_name.as_deref(),
            expires: self.expires,
            client_type: self.client_type,
            policy_name: self.policy_name.as_deref(),
        }
    }
}

/// One stored lease as a store reads it, borrowed from its row: the startup load hands each over
/// without making a [`Lease`] (four allocations) of it. The fields are those of [`Lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRow<'a> {
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client identity.
    pub client_id: &'a [u8],
    /// The hardware type.
    pub hw_type: u8,
    /// The client hardware address (at most 16 bytes).
    pub hw_address: &'a [u8],
    /// The host name the client sent, if any.
    pub host_name: Option<&'a str>,
    /// When the lease expires; `None` = never.
    pub expires: Option<SystemTime>,
    /// DHCP or BOOTP.
    pub client_type: ClientType,
    /// The scope policy the lease was granted under.
    pub policy_name: Option<&'a str>,
}

impl LeaseRow<'_> {
    /// The row as an owned [`Lease`].
    pub fn to_lease(&self) -> Lease {
        Lease {
            ip: self.ip,
            client_id: self.client_id.to_vec(),
            hw_type: self.hw_type,
            hw_address: self.hw_address.to_vec(),
            host_name: self.host_name.map(str::to_owned),
            expires: self.expires,
            client_type: self.client_type,
            policy_name: self.policy_name.map(str::to_owned),
        }
    }
}

/// Receives the stored leases one by one ([`LeaseStore::load_into`]).
pub trait LeaseSink {
    /// How many leases are coming (called once, first; to size the receiver once).
    fn expect(&mut self, count: usize);
    /// One stored lease.
    fn lease(&mut self, lease: &LeaseRow<'_>);
}

/// Collects the leases (what [`LeaseStore::load_all`] returns).
impl LeaseSink for Vec<Lease> {
    fn expect(&mut self, count: usize) {
        self.reserve(count);
    }

    fn lease(&mut self, lease: &LeaseRow<'_>) {
        self.push(lease.to_lease());
    }
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
    /// The database, its folder or its lock file cannot be written: found when the store opens,
    /// so a server never starts on a database where no lease could be stored.
    #[error("lease database {path} cannot be written: {why}")]
    NotWritable {
        /// The database file.
        path: PathBuf,
        /// What failed, and what was found about the file and its folder.
        why: String,
    },
    /// A backup of the lease database failed.
    #[error("lease database {path}: backup to {dest}: {why}")]
    Backup {
        /// The database file.
        path: PathBuf,
        /// The backup file.
        dest: PathBuf,
        /// What failed.
        why: String,
    },
    /// This store keeps nothing on disk to back up.
    #[error("this lease store ({0}) has no database to back up")]
    NoBackup(&'static str),
    /// The batch holding this change failed to commit.
    #[error("lease database {path}: commit failed: {message}")]
    CommitFailed {
        /// The database file.
        path: PathBuf,
        /// The failure of the batch.
        message: String,
    },
}

/// What one backup of the lease database wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file (a complete SQLite database, rollback journal mode).
    pub file: PathBuf,
    /// Leases it holds.
    pub leases: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

pub use calloutd_hooks::CommitTicket;

/// Where leases are persisted. Implementations must be thread-safe.
pub trait LeaseStore: Send + Sync {
    /// Every stored lease, in address order.
    fn load_all(&self) -> Result<Vec<Lease>, StoreError>;
    /// Hands every stored lease to `sink`, in address order, one at a time (the engine's startup
    /// load: no vector of 1 000 000 leases on the way). The default goes through [`Self::load_all`].
    fn load_into(&self, sink: &mut dyn LeaseSink) -> Result<(), StoreError> {
        let leases = self.load_all()?;
        sink.expect(leases.len());
        for lease in &leases {
            sink.lease(&lease.row());
        }
        Ok(())
    }
    /// Queues "this lease now exists" (insert or replace by address). Must not do disk I/O: it is called
    /// under the lease lock.
    fn put(&self, lease: Lease) -> CommitTicket;
    /// Queues "no lease on this address any more". Must not do disk I/O.
    fn remove(&self, ip: Ipv4Addr) -> CommitTicket;
    /// Waits until the change `ticket` (and everything queued before it) has been through a
    /// transaction, and says whether the one that held `ticket` committed: `Ok` only when that
    /// change is durable, whatever became of other batches before or after it.
    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError>;

    /// Writes a consistent copy of every committed lease to the database file `dest` (replacing it
    /// only once the copy is complete) while commits go on. Stores without a database refuse.
    fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let _ = dest;
        Err(StoreError::NoBackup("not a database"))
    }
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

    fn load_into(&self, sink: &mut dyn LeaseSink) -> Result<(), StoreError> {
        let leases = self.lock();
        sink.expect(leases.len());
        for lease in leases.values() {
            sink.lease(&lease.row());
        }
        Ok(())
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
    /// The failed batches, oldest first (see [`Failures`]).
    failures: Failures,
}

/// A failed batch: its ticket range and SQLite's error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failed {
    low: u64,
    high: u64,
    message: String,
}

/// How many failed ticket ranges are remembered. Consecutive failed batches with the same error
/// share one range, so this bounds the alternations of failure and success, not the failures.
const FAILED_RANGES_KEPT: usize = 1024;

/// Every batch's result, as far as a waiter can still ask for it: the ranges of the failed batches
/// (every other ticket up to `Queue::committed` committed). Each waiter is told its own batch's
/// result, however many batches failed after it. Past [`FAILED_RANGES_KEPT`] ranges the oldest is
/// dropped, and every ticket up to it is reported as failed: its result is no longer known, and a
/// reply withheld wrongly is retried by its client, while one sent wrongly acknowledges a lease that
/// may not be stored.
#[derive(Debug, Default)]
struct Failures {
    ranges: std::collections::VecDeque<Failed>,
    /// Tickets up to this one have no known result any more.
    forgotten: u64,
}

impl Failures {
    /// Records that the batch `low..=high` failed with `message`.
    fn record(&mut self, low: u64, high: u64, message: String) {
        if let Some(last) = self.ranges.back_mut() {
            if last.high + 1 == low && last.message == message {
                last.high = high;
                return;
            }
        }
        self.ranges.push_back(Failed { low, high, message });
        while self.ranges.len() > FAILED_RANGES_KEPT {
            if let Some(oldest) = self.ranges.pop_front() {
                self.forgotten = oldest.high;
            }
        }
    }

    /// The error of the batch that held `ticket` (already through a transaction), `None` if it
    /// committed.
    fn of(&self, ticket: u64) -> Option<String> {
        // The ranges are in ticket order and disjoint: the candidate is the last one starting at
        // or before `ticket`.
        let after = self.ranges.partition_point(|failed| failed.low <= ticket);
        if let Some(failed) = after.checked_sub(1).and_then(|i| self.ranges.get(i)) {
            if ticket <= failed.high {
                return Some(failed.message.clone());
            }
        }
        // Ticket 0 is "no change": nothing to fail (tickets are issued from 1).
        (ticket != 0 && ticket <= self.forgotten).then(|| {
            format!(
                "the result of its batch is no longer known (more than {FAILED_RANGES_KEPT} failed batches since)"
            )
        })
    }
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
    queue: Mutex<Queue>,
    /// Signalled after every transaction.
    done: Condvar,
    /// Used only by the worker that is committing.
    conn: Mutex<Connection>,
    checkpointer: Option<Ticker>,
    /// Held (locked) for as long as the store is open.
    _lock: std::fs::File,
}

/// How long a commit waits for another process's write lock on the database before it fails.
const BUSY_TIMEOUT: Duration = if cfg!(test) {
    // The unit tests hold the lock on purpose to make commits fail.
    Duration::from_millis(200)
} else {
    Duration::from_secs(1)
};

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
    client_type INTEGER NOT NULL,    -- DHCP_CLIENT_BOOTP or DHCP_CLIENT_DHCP
    policy_name TEXT                 -- the scope policy it was granted under; NULL = none
);";

/// Columns added after the first schema, with their definitions: a database made by an older
/// calloutd gets them at open (`ALTER TABLE ... ADD COLUMN`), its rows keeping NULL there.
const ADDED_COLUMNS: &[(&str, &str)] = &[("policy_name", "TEXT")];

const PUT_SQL: &str = "INSERT OR REPLACE INTO leases \
    (ip, client_id, hw_type, hw_address, host_name, expires, client_type, policy_name) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const REMOVE_SQL: &str = "DELETE FROM leases WHERE ip = ?1";

impl SqliteLeaseStore {
    /// Opens (creating if needed) the lease database at `path`. Its leases are read when asked
    /// ([`LeaseStore::load_into`]), straight into their receiver.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let sql_err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let lock = take_lock(&path)?;
        let conn = Connection::open(&path).map_err(sql_err)?;
        // Another process holding the file: give up after a second rather than SQLite's default 5 s.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
        // SQLite opens a file it may not write read-only, and then every lease commit would fail:
        // a database that cannot be written is found here, once.
        check_writable(&conn, &path)?;
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
        migrate(&conn).map_err(sql_err)?;
        // Prepare once here so a bad schema fails at open, not at the first commit.
        conn.prepare_cached(PUT_SQL).map_err(sql_err)?;
        conn.prepare_cached(REMOVE_SQL).map_err(sql_err)?;
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
        let mut leases = Vec::new();
        self.load_into(&mut leases)?;
        Ok(leases)
    }

    fn load_into(&self, sink: &mut dyn LeaseSink) -> Result<(), StoreError> {
        // The database as it is now, with what is queued committed first.
        let issued = self.lock().issued;
        self.commit(CommitTicket(issued))?;
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        read_leases(&conn, &self.path, sink)
    }

    fn put(&self, lease: Lease) -> CommitTicket {
        self.enqueue(Change::Put(lease))
    }

    fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        self.backup_to(dest)
    }

    fn remove(&self, ip: Ipv4Addr) -> CommitTicket {
        self.enqueue(Change::Remove(ip))
    }

    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError> {
        let mut queue = self.lock();
        // A ticket never issued would wait for a batch that never comes.
        let ticket = ticket.0.min(queue.issued);
        loop {
            if queue.committed >= ticket {
                return match queue.failures.of(ticket) {
                    Some(message) => Err(StoreError::CommitFailed {
                        path: self.path.clone(),
                        message,
                    }),
                    None => Ok(()),
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
                queue.failures.record(low, high, error.to_string());
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

impl SqliteLeaseStore {
    /// The backup itself (see [`LeaseStore::backup`]): SQLite's online backup API from a connection
    /// of its own (a WAL reader: commits are not blocked) into `<dest>.tmp`, which is checked and
    /// then renamed over `dest`.
    fn backup_to(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let failed = |why: String| StoreError::Backup {
            path: self.path.clone(),
            dest: dest.to_path_buf(),
            why,
        };
        let mut name = dest.as_os_str().to_owned();
        name.push(".tmp");
        let partial = PathBuf::from(name);
        // A leftover of an interrupted backup is not a database to open.
        match std::fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(format!("{}: {e}", partial.display()))),
        }
        let leases = match copy_database(&self.path, &partial) {
            Ok(leases) => leases,
            Err(why) => {
                let _ = std::fs::remove_file(&partial);
                return Err(failed(why));
            }
        };
        std::fs::rename(&partial, dest).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            failed(format!("renaming {} to it: {e}", partial.display()))
        })?;
        let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        Ok(BackupReport {
            file: dest.to_path_buf(),
            leases,
            bytes,
        })
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

/// Copies the database at `source` into a new file `copy` with SQLite's online backup API, makes
/// the copy stand alone (rollback journal) and checks it; the number of leases it holds.
fn copy_database(source: &Path, copy: &Path) -> Result<u64, String> {
    let sql = |e: rusqlite::Error| e.to_string();
    let from = Connection::open_with_flags(
        source,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    from.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    let mut to = Connection::open(copy).map_err(sql)?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut to).map_err(sql)?;
        // All pages in one step: one read transaction, so one consistent picture (a commit during
        // a step-by-step backup would make it start over).
        let mut tries = 0;
        loop {
            match backup.step(-1).map_err(sql)? {
                rusqlite::backup::StepResult::Done => break,
                _ if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return Err(format!("the database stayed busy ({other:?})")),
            }
        }
    }
    // One file, no -wal or -shm beside it: what a restore copies back.
    to.pragma_update(None, "journal_mode", "DELETE")
        .map_err(sql)?;
    let check: String = to
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(sql)?;
    if check != "ok" {
        return Err(format!("the copy fails SQLite's quick_check: {check}"));
    }
    let leases: i64 = to
        .query_row("SELECT count(*) FROM leases", [], |row| row.get(0))
        .map_err(sql)?;
    Ok(u64::try_from(leases).unwrap_or(0))
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
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                StoreError::NotWritable {
                    path: path.to_path_buf(),
                    why: format!(
                        "cannot create its lock file {}: {source}{}",
                        lock_path.display(),
                        diagnose(path)
                    ),
                }
            }
            _ => StoreError::LockFile {
                path: path.to_path_buf(),
                lock: lock_path.clone(),
                source,
            },
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

/// Fails unless a write transaction on `conn` commits: SQLite opens a file it may not write
/// read-only (a read-only file or folder, an immutable file, another owner), and says so only when a
/// write is tried.
fn check_writable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let not_writable = |what: String| StoreError::NotWritable {
        path: path.to_path_buf(),
        why: format!("{what}{}", diagnose(path)),
    };
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| not_writable(e.to_string()))?
    {
        return Err(not_writable("SQLite could open it only read-only".into()));
    }
    // Rewriting the header's user_version with its own value is a write transaction that changes
    // nothing: it needs the file, the journal and the folder to be writable.
    let probe = || -> rusqlite::Result<()> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; PRAGMA user_version = {version}; COMMIT;"
        ))
    };
    probe().map_err(|e| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        not_writable(format!("a test write failed: {e}"))
    })
}

/// Windows: the file's ACL is not read; only the read-only attribute is told.
#[cfg(windows)]
fn diagnose(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().readonly() => {
            format!("; the file {} is read-only", path.display())
        }
        _ => "; check the file's and its folder's permissions (ACL) and the read-only attribute"
            .into(),
    }
}

/// What may keep `path` (a database file) from being written, for the error message: empty when
/// nothing is found.
#[cfg(unix)]
fn diagnose(path: &Path) -> String {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // The owner of /proc/self is this process's effective user.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let mut found = Vec::new();
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    for (what, place) in [("the file", path), ("its folder", folder)] {
        let Ok(meta) = std::fs::metadata(place) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if me != Some(0) {
            if mode & 0o222 == 0 {
                found.push(format!(
                    "{what} {} is read-only (mode {mode:04o})",
                    place.display()
                ));
            }
            if me.is_some_and(|uid| uid != meta.uid()) {
                found.push(format!(
                    "{what} {} belongs to uid {}, calloutd runs as uid {}",
                    place.display(),
                    meta.uid(),
                    me.unwrap_or_default()
                ));
            }
        }
    }
    if found.is_empty() {
        "; check the permissions and owner of the file and its folder, an immutable attribute \
         (lsattr), and whether the file system is mounted read-only"
            .into()
    } else {
        format!("; {}", found.join("; "))
    }
}

/// Adds the [`ADDED_COLUMNS`] a database made by an older calloutd lacks.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('leases')")?;
    let present: Vec<String> = stmt
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !present.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            conn.execute_batch(&format!(
                "ALTER TABLE leases ADD COLUMN {name} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Reads every stored lease into `sink`, in address order, one row at a time: each is handed over
/// borrowed from SQLite's row, so nothing per lease is allocated here.
fn read_leases(conn: &Connection, path: &Path, sink: &mut dyn LeaseSink) -> Result<(), StoreError> {
    let sql_err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    // The row count first, so the receiver is sized once (1 000 000 leases).
    let count: i64 = conn
        .query_row("SELECT count(*) FROM leases", [], |row| row.get(0))
        .map_err(sql_err)?;
    sink.expect(usize::try_from(count).unwrap_or(0));
    let mut stmt = conn
        .prepare(
            "SELECT ip, client_id, hw_type, hw_address, host_name, expires, client_type, \
             policy_name FROM leases ORDER BY ip",
        )
        .map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    while let Some(row) = rows.next().map_err(sql_err)? {
        sink.lease(&lease_of_row(row, path)?);
    }
    Ok(())
}

/// The lease in `row` (of [`read_leases`]'s query), checked.
fn lease_of_row<'r>(row: &'r Row<'_>, path: &Path) -> Result<LeaseRow<'r>, StoreError> {
    let sql_err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let ip = row.get::<_, i64>(0).map_err(sql_err)?;
    let client_id = borrowed(row, 1, ValueRef::as_blob).map_err(sql_err)?;
    let hw_type = row.get::<_, i64>(2).map_err(sql_err)?;
    let hw_address = borrowed(row, 3, ValueRef::as_blob).map_err(sql_err)?;
    let host_name = borrowed(row, 4, ValueRef::as_str_or_null).map_err(sql_err)?;
    let expires = row.get::<_, Option<i64>>(5).map_err(sql_err)?;
    let client_type = row.get::<_, i64>(6).map_err(sql_err)?;
    let policy_name = borrowed(row, 7, ValueRef::as_str_or_null).map_err(sql_err)?;
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
    Ok(LeaseRow {
        ip,
        client_id,
        hw_type,
        hw_address,
        host_name,
        expires,
        client_type,
        policy_name,
    })
}

/// Column `idx` of `row` read in place by `read` (`ValueRef::as_blob`, ...), failing as
/// `Row::get` would for the owned type (`Vec<u8>`, `Option<String>`).
fn borrowed<'r, T>(
    row: &'r Row<'_>,
    idx: usize,
    read: impl FnOnce(&ValueRef<'r>) -> FromSqlResult<T>,
) -> rusqlite::Result<T> {
    let value = row.get_ref(idx)?;
    read(&value).map_err(|error| match error {
        FromSqlError::InvalidType => rusqlite::Error::InvalidColumnType(
            idx,
            row.as_ref()
                .column_name(idx)
                .map(str::to_owned)
                .unwrap_or_default(),
            value.data_type(),
        ),
        FromSqlError::OutOfRange(i) => rusqlite::Error::IntegralValueOutOfRange(idx, i),
        FromSqlError::Utf8Error(error) => rusqlite::Error::Utf8Error(idx, error),
        FromSqlError::Other(error) => {
            rusqlite::Error::FromSqlConversionFailure(idx, value.data_type(), error)
        }
        other => rusqlite::Error::FromSqlConversionFailure(idx, value.data_type(), Box::new(other)),
    })
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
                    lease.policy_name,
                ])?;
            }
            Change::Remove(ip) => {
                remove.execute(params![u32::from(*ip)])?;
            }
        }
    }
    Ok(())
}

/// Test helpers shared by the crate's tests that open stores or run child processes.
#[cfg(test)]
pub(crate) mod testing {
    use super::{SqliteLeaseStore, StoreError};
    use std::path::Path;
    use std::sync::Mutex;

    /// Held while a test runs a child process, and while a store is opened. A child holds copies of
    /// this process's descriptors from its fork until its exec, among them the lock file of a store
    /// another test has just dropped: opening that database again then finds it "in use" (seen as
    /// rare failures under load). No child runs while a store opens.
    static SPAWNING: Mutex<()> = Mutex::new(());

    /// [`SqliteLeaseStore::open`], never while a test's child process may hold a copy of a lock file.
    pub(crate) fn open_store(path: impl AsRef<Path>) -> Result<SqliteLeaseStore, StoreError> {
        let _no_child = SPAWNING.lock().unwrap_or_else(|p| p.into_inner());
        SqliteLeaseStore::open(path)
    }

    /// Runs `chattr FLAG PATH` (e2fsprogs), never while a store opens.
    #[cfg(unix)]
    pub(crate) fn chattr(flag: &str, path: &Path) -> std::io::Result<std::process::ExitStatus> {
        let _no_open = SPAWNING.lock().unwrap_or_else(|p| p.into_inner());
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    use super::testing::chattr;
    use super::testing::open_store;
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
            policy_name: last.is_multiple_of(2).then(|| format!("policy{last}")),
        }
    }

    #[test]
    fn a_database_of_the_first_schema_gets_the_policy_column_and_keeps_its_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        {
            // What calloutd wrote before leases kept their policy.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(&format!(
                "CREATE TABLE leases (ip INTEGER PRIMARY KEY, client_id BLOB NOT NULL, \
                 hw_type INTEGER NOT NULL, hw_address BLOB NOT NULL, host_name TEXT, \
                 expires INTEGER, client_type INTEGER NOT NULL); \
                 INSERT INTO leases VALUES ({}, x'01020304', 1, x'02000000000a', 'old', NULL, {});",
                u32::from(Ipv4Addr::new(198, 18, 0, 10)),
                ClientType::Dhcp.code()
            ))
            .unwrap();
        }
        {
            let store = open_store(&path).unwrap();
            let loaded = store.load_all().unwrap();
            assert_eq!(loaded.len(), 1);
            assert_eq!(loaded[0].ip, Ipv4Addr::new(198, 18, 0, 10));
            assert_eq!(loaded[0].host_name.as_deref(), Some("old"));
            assert_eq!(loaded[0].policy_name, None);
            let ticket = store.put(lease(12));
            store.commit(ticket).unwrap();
        }
        // Opened again (the column exists now): both leases, the new one with its policy.
        let store = open_store(&path).unwrap();
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[1], lease(12));
        assert_eq!(loaded[1].policy_name.as_deref(), Some("policy12"));
    }

    /// A row that is not a lease fails the load with the error reading it into a `Lease` gave: the
    /// borrowed columns fail as `Row::get` of the owned type does, a bad value names its row.
    #[test]
    fn a_bad_row_fails_the_load_as_reading_it_owned_did() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = open_store(&path).unwrap();
        let raw = Connection::open(&path).unwrap();
        let query = "SELECT ip, client_id, hw_type, hw_address, host_name, expires, client_type, \
                     policy_name FROM leases";
        for (damage, column) in [
            ("UPDATE leases SET client_id = 'text'", 1),
            ("UPDATE leases SET hw_address = 5", 3),
            ("UPDATE leases SET host_name = CAST(x'ff' AS TEXT)", 4),
            ("UPDATE leases SET policy_name = x'00'", 7),
        ] {
            raw.execute_batch("DELETE FROM leases").unwrap();
            store.commit(store.put(lease(1))).unwrap();
            raw.execute_batch(damage).unwrap();
            let owned = raw
                .query_row(query, [], |row| match column {
                    1 | 3 => row.get::<_, Vec<u8>>(column).map(drop),
                    _ => row.get::<_, Option<String>>(column).map(drop),
                })
                .unwrap_err();
            let error = store.load_all().unwrap_err().to_string();
            assert_eq!(
                error,
                format!("lease database {}: {owned}", path.display()),
                "{damage}"
            );
        }
        raw.execute_batch("DELETE FROM leases").unwrap();
        store.commit(store.put(lease(1))).unwrap();
        raw.execute_batch("UPDATE leases SET client_type = 7")
            .unwrap();
        let error = store.load_all().unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "lease database {}: row for 198.18.0.1: unknown client type 7",
                path.display()
            )
        );
    }

    #[test]
    fn put_remove_commit_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        {
            let store = open_store(&path).unwrap();
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
        let store = open_store(&path).unwrap();
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
        let first = open_store(&path).unwrap();
        first.commit(first.put(lease(1))).unwrap();
        let second = open_store(&path);
        assert!(
            matches!(second, Err(StoreError::InUse { .. })),
            "opened a database another store holds: {second:?}"
        );
        drop(first);
        assert_eq!(open_store(&path).unwrap().load_all().unwrap().len(), 1);
    }

    #[test]
    fn the_checkpoint_thread_writes_commits_back_and_others_can_read_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = open_store(&path).unwrap();
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

    /// Another connection holding the database's write lock: until it is dropped, every commit of
    /// the store fails (SQLITE_BUSY after [`BUSY_TIMEOUT`]), as it would while the sqlite3 shell or
    /// a backup tool writes.
    fn hold_write_lock(path: &Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    fn stored_ips(path: &Path) -> Vec<u8> {
        let reader = Connection::open(path).unwrap();
        let mut stmt = reader.prepare("SELECT ip FROM leases ORDER BY ip").unwrap();
        let ips = stmt
            .query_map([], |row| row.get::<_, u32>(0))
            .unwrap()
            .map(|ip| Ipv4Addr::from(ip.unwrap()).octets()[3])
            .collect();
        ips
    }

    #[test]
    fn consecutive_failed_batches_each_report_their_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = open_store(&path).unwrap();
        let first = store.put(lease(1));
        store.commit(first).unwrap();

        let lock = hold_write_lock(&path);
        let failed_a = store.put(lease(2));
        assert!(store.commit(failed_a).is_err(), "committed under a lock");
        let failed_b = store.put(lease(3));
        assert!(store.commit(failed_b).is_err(), "committed under a lock");
        drop(lock);
        let ok = store.put(lease(4));
        store.commit(ok).unwrap();
        let lock = hold_write_lock(&path);
        let failed_c = store.put(lease(5));
        assert!(store.commit(failed_c).is_err(), "committed under a lock");
        drop(lock);

        // Asked again, later, every waiter gets its own batch's result: a failed batch stays failed
        // after later ones fail or succeed, a committed one stays committed.
        for (ticket, committed) in [
            (first, true),
            (failed_a, false),
            (failed_b, false),
            (ok, true),
            (failed_c, false),
        ] {
            let result = store.commit(ticket);
            assert_eq!(result.is_ok(), committed, "ticket {ticket:?}: {result:?}");
            if let Err(error) = result {
                assert!(
                    matches!(error, StoreError::CommitFailed { .. }),
                    "ticket {ticket:?}: {error}"
                );
                assert!(error.to_string().contains("locked"), "{error}");
            }
        }
        assert_eq!(
            stored_ips(&path),
            [1, 4],
            "what was told Ok is what is stored"
        );
    }

    #[test]
    fn concurrent_waiters_of_failing_and_committing_batches_get_their_batchs_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = Arc::new(open_store(&path).unwrap());
        // Rounds of four threads that each queue and commit one lease at once: the rounds under the
        // lock fail (in one batch or several), the others commit.
        let mut told = Vec::new();
        for round in 0..4u8 {
            let lock = (round % 2 == 0).then(|| hold_write_lock(&path));
            let threads: Vec<_> = (0..4u8)
                .map(|t| {
                    let store = Arc::clone(&store);
                    let last = round * 10 + t + 1;
                    std::thread::spawn(move || {
                        let ticket = store.put(lease(last));
                        (last, ticket, store.commit(ticket).is_ok())
                    })
                })
                .collect();
            for thread in threads {
                let (last, ticket, ok) = thread.join().unwrap();
                assert_eq!(ok, lock.is_none(), "lease .{last} in round {round}");
                told.push((last, ticket, ok));
            }
            drop(lock);
        }
        for (last, ticket, ok) in &told {
            assert_eq!(
                store.commit(*ticket).is_ok(),
                *ok,
                "lease .{last} asked again"
            );
        }
        let mut expected: Vec<u8> = told
            .iter()
            .filter(|(_, _, ok)| *ok)
            .map(|(last, ..)| *last)
            .collect();
        expected.sort_unstable();
        assert_eq!(stored_ips(&path), expected);
    }

    #[test]
    fn committing_before_any_change_succeeds() {
        // A round without a lease change commits ticket 0; it used to be reported as a forgotten
        // failure ("the result of its batch is no longer known").
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path().join("dhcp.db")).unwrap();
        assert!(store.commit(CommitTicket::default()).is_ok());
        let ticket = store.put(lease(10));
        assert!(store.commit(ticket).is_ok());
        assert!(store.commit(CommitTicket::default()).is_ok());
    }

    #[test]
    fn failed_ranges_merge_and_the_forgotten_ones_count_as_failed() {
        let mut failures = Failures::default();
        failures.record(3, 4, "disk full".into());
        failures.record(5, 7, "disk full".into());
        failures.record(8, 8, "locked".into());
        failures.record(12, 12, "disk full".into());
        assert_eq!(failures.ranges.len(), 3, "{:?}", failures.ranges);
        assert!(failures.of(0).is_none(), "ticket 0 (no change) never fails");
        let failed: Vec<u64> = (1..=14).filter(|t| failures.of(*t).is_some()).collect();
        assert_eq!(failed, [3, 4, 5, 6, 7, 8, 12]);
        assert_eq!(failures.of(8).as_deref(), Some("locked"));
        // Alternating failures and successes: past the limit the oldest ranges are dropped, and
        // their tickets (and the successes among them) count as failed.
        for n in 0..FAILED_RANGES_KEPT as u64 {
            failures.record(100 + 2 * n, 100 + 2 * n, "disk full".into());
        }
        assert_eq!(failures.ranges.len(), FAILED_RANGES_KEPT);
        assert_eq!(failures.forgotten, 12);
        assert!(failures.of(1).is_some() && failures.of(11).is_some());
        assert!(failures.of(0).is_none(), "ticket 0 (no change) never fails");
        assert!(
            failures.of(13).is_none(),
            "a success after the forgotten ones"
        );
        assert!(failures.of(101).is_none(), "a success still known");
        assert!(failures.of(100).is_some());
    }

    /// Makes `path` unwritable for this process until dropped: read-only (mode 0555/0444) for a
    /// user, the immutable attribute for root (whom modes do not stop). Unix only (modes, chattr).
    #[cfg(unix)]
    struct Unwritable {
        path: PathBuf,
        mode: u32,
        root: bool,
    }

    #[cfg(unix)]
    impl Unwritable {
        fn make(path: &Path) -> Unwritable {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            if root {
                let status = chattr("+i", path)
                    .expect("chattr (e2fsprogs) is needed to make a file unwritable for root");
                assert!(status.success(), "chattr +i {} failed", path.display());
            } else {
                let read_only = if path.is_dir() { 0o555 } else { 0o444 };
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(read_only)).unwrap();
            }
            Unwritable {
                path: path.to_path_buf(),
                mode,
                root,
            }
        }
    }

    #[cfg(unix)]
    impl Drop for Unwritable {
        fn drop(&mut self) {
            use std::os::unix::fs::PermissionsExt;
            if self.root {
                let _ = chattr("-i", &self.path);
            } else {
                let _ = std::fs::set_permissions(
                    &self.path,
                    std::fs::Permissions::from_mode(self.mode),
                );
            }
        }
    }

    // Unix only: makes the file unwritable with modes or chattr.
    #[cfg(unix)]
    #[test]
    fn an_unwritable_database_or_folder_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        drop(open_store(&path).unwrap());
        {
            let _file = Unwritable::make(&path);
            let opened = open_store(&path);
            assert!(
                matches!(opened, Err(StoreError::NotWritable { .. })),
                "opened an unwritable database: {opened:?}"
            );
        }
        // A folder where nothing can be created: a new database, and the lock file of an old one.
        let folder = dir.path().join("sealed");
        std::fs::create_dir(&folder).unwrap();
        {
            let _folder = Unwritable::make(&folder);
            let opened = open_store(folder.join("leases.db"));
            let error = opened.expect_err("opened a database in an unwritable folder");
            assert!(matches!(error, StoreError::NotWritable { .. }), "{error:?}");
            assert!(error.to_string().contains("cannot be written"), "{error}");
        }
        // Writable again, it opens with what it held.
        let store = open_store(&path).unwrap();
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn a_backup_holds_every_committed_lease_while_commits_go_on_and_opens_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = Arc::new(open_store(&path).unwrap());
        for last in 1..=100 {
            store.put(lease(last));
        }
        store.commit(CommitTicket(100)).unwrap();
        // Commits from another thread while the backups run; none waits for a backup.
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for last in 101..=200u8 {
                    let ticket = store.put(lease(last));
                    store.commit(ticket).unwrap();
                }
            })
        };
        let dest = dir.path().join("backup.sqlite3");
        for _ in 0..3 {
            let report = store.backup(&dest).unwrap();
            assert_eq!(report.file, dest);
            assert!((100..=200).contains(&report.leases), "{report:?}");
            assert!(report.bytes > 0);
        }
        writer.join().unwrap();
        let report = store.backup(&dest).unwrap();
        assert_eq!(report.leases, 200);
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".tmp");
        assert!(!Path::new(&partial).exists(), "the partial copy was left");
        let mut wal = dest.as_os_str().to_owned();
        wal.push("-wal");
        assert!(!Path::new(&wal).exists(), "the backup is not one file");
        drop(store);

        // Restored (copied where a database is expected), it is a lease database like any other.
        let restored = dir.path().join("restored.db");
        std::fs::copy(&dest, &restored).unwrap();
        let reopened = open_store(&restored).unwrap();
        let leases = reopened.load_all().unwrap();
        assert_eq!(leases.len(), 200);
        assert_eq!(leases[0], lease(1));
        reopened.commit(reopened.put(lease(201))).unwrap();
    }

    #[test]
    fn a_backup_that_cannot_be_written_fails_and_leaves_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path().join("leases.db")).unwrap();
        store.commit(store.put(lease(1))).unwrap();
        let missing = dir.path().join("no such folder").join("backup.sqlite3");
        let error = store.backup(&missing).unwrap_err();
        assert!(matches!(error, StoreError::Backup { .. }), "{error:?}");
        assert!(error.to_string().contains("backup to"), "{error}");
        // Memory stores have nothing to back up.
        assert!(matches!(
            MemoryLeaseStore::new().backup(&missing),
            Err(StoreError::NoBackup(_))
        ));
    }

    #[test]
    fn concurrent_commits_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let store = Arc::new(open_store(&path).unwrap());
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
        let reopened = open_store(&path).unwrap();
        assert_eq!(reopened.load_all().unwrap().len(), 100);
    }
}
