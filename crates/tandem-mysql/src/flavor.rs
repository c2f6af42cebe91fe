//! MariaDB or MySQL: where the two differ for a binlog reader.
//!
//! MariaDB is what tandem is tested on; MySQL 8.0/8.4 takes the fallback paths, each of
//! which is selectable so that the tests exercise it on MariaDB too:
//!
//! | | MariaDB | MySQL |
//! |---|---|---|
//! | GTIDs | `domain-server-seq`, resumed with `@slave_connect_state` | `uuid:1-5` sets, resumed with `COM_BINLOG_DUMP_GTID` |
//! | snapshot position | `binlog_snapshot_file/position` (no lock) | a short global read lock |
//! | binlog position | `SHOW MASTER STATUS` | the same, `SHOW BINARY LOG STATUS` from 8.2 (8.4 has only that) |
//! | own writes | `skip_replication` or marker row | marker row |
//!
//! The flavour comes from `VERSION()` (MariaDB's says `MariaDB`) and, for builds that
//! rename themselves, `@@version_comment`.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tandem_core::error::StageError;

use crate::connect::classify;

/// Which server, and for MySQL its version (the statements differ by version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFlavor {
    MariaDb,
    MySql { major: u32, minor: u32 },
}

impl ServerFlavor {
    /// From `VERSION()` and `@@version_comment`.
    pub fn from_version(version: &str, comment: &str) -> ServerFlavor {
        if version.to_ascii_lowercase().contains("mariadb")
            || comment.to_ascii_lowercase().contains("mariadb")
        {
            return ServerFlavor::MariaDb;
        }
        let mut nums = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        ServerFlavor::MySql {
            major: nums.next().unwrap_or(0),
            minor: nums.next().unwrap_or(0),
        }
    }

    /// Ask the server.
    pub async fn detect(conn: &mut Conn) -> Result<ServerFlavor, StageError> {
        let row: Option<(String, Option<String>)> = conn
            .query_first("SELECT VERSION(), @@version_comment")
            .await
            .map_err(|e| classify("Reading the server version", e))?;
        let (version, comment) = row.unwrap_or_default();
        Ok(ServerFlavor::from_version(
            &version,
            comment.as_deref().unwrap_or(""),
        ))
    }

    pub fn is_mariadb(self) -> bool {
        self == ServerFlavor::MariaDb
    }

    /// The statement that shows the current binlog file, position (and on MySQL the
    /// executed GTID set).
    pub fn binlog_status_sql(self) -> &'static str {
        match self {
            ServerFlavor::MySql { major, minor } if (major, minor) >= (8, 2) => {
                "SHOW BINARY LOG STATUS"
            }
            _ => "SHOW MASTER STATUS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_from_version_strings() {
        assert_eq!(
            ServerFlavor::from_version("10.11.19-MariaDB-1:10.11.19+maria~deb12", ""),
            ServerFlavor::MariaDb
        );
        assert_eq!(
            ServerFlavor::from_version("11.4.2", "MariaDB Server"),
            ServerFlavor::MariaDb
        );
        let m84 = ServerFlavor::from_version("8.4.3", "MySQL Community Server - GPL");
        assert_eq!(m84, ServerFlavor::MySql { major: 8, minor: 4 });
        assert_eq!(m84.binlog_status_sql(), "SHOW BINARY LOG STATUS");
        let m80 = ServerFlavor::from_version("8.0.36-0ubuntu0.22.04.1", "(Ubuntu)");
        assert_eq!(m80.binlog_status_sql(), "SHOW MASTER STATUS");
        assert_eq!(
            ServerFlavor::MariaDb.binlog_status_sql(),
            "SHOW MASTER STATUS"
        );
    }
}
