//! The provider's SQLite state store: clones and budgets, registered for the controller to find.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory of the state file could not be created.
    #[error("could not create the directory of the state store {}", .0.display())]
    CreateDirFailed(PathBuf, #[source] std::io::Error),
    /// The database could not be opened or migrated.
    #[error("could not open the state store {}", .0.display())]
    OpenFailed(PathBuf, #[source] rusqlite::Error),
    /// A query failed.
    #[error("state store query failed")]
    QueryFailed(#[from] rusqlite::Error),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kinds of objects in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `predictive_clone`.
    Clone,
    /// A `predictive_budget`.
    Budget,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Clone => "clone",
            Kind::Budget => "budget",
        }
    }
}

/// The store: one table of JSON documents by kind and id.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    ///
    /// # Errors
    /// When the file or its directory cannot be created or opened.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::CreateDirFailed(dir.to_path_buf(), e))?;
        }
        let conn = Connection::open(path).map_err(|e| Error::OpenFailed(path.to_path_buf(), e))?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS objects (
               kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
               PRIMARY KEY (kind, id));",
        )
        .map_err(|e| Error::OpenFailed(path.to_path_buf(), e))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts or replaces an object.
    ///
    /// # Errors
    /// When the write fails.
    pub fn put(&self, kind: Kind, id: &str, name: &str, body: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO objects (kind, id, name, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, body = excluded.body",
            params![kind.as_str(), id, name, body],
        )?;
        Ok(())
    }

    /// The body of an object.
    ///
    /// # Errors
    /// When the read fails.
    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT body FROM objects WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Removes an object; removing a missing object is not an error.
    ///
    /// # Errors
    /// When the write fails.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM objects WHERE kind = ?1 AND id = ?2",
            params![kind.as_str(), id],
        )?;
        Ok(())
    }

    /// All objects of a kind as `(id, name, body)`, by id.
    ///
    /// # Errors
    /// When the read fails.
    pub fn list(&self, kind: Kind) -> Result<Vec<(String, String, String)>> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT id, name, body FROM objects WHERE kind = ?1 ORDER BY id")?;
        let rows = st.query_map(params![kind.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_should_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        let s = Store::open(&path).unwrap();
        s.put(Kind::Clone, "c1", "web", "{\"a\":1}").unwrap();
        s.put(Kind::Clone, "c1", "web", "{\"a\":2}").unwrap();
        s.put(Kind::Budget, "b1", "team", "{}").unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.get(Kind::Clone, "c1").unwrap().as_deref(),
            Some("{\"a\":2}")
        );
        assert_eq!(s.list(Kind::Budget).unwrap().len(), 1);
        s.delete(Kind::Clone, "c1").unwrap();
        s.delete(Kind::Clone, "c1").unwrap();
        assert_eq!(s.get(Kind::Clone, "c1").unwrap(), None);
    }
}
