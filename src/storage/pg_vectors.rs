//! Vector search inside PostgreSQL with pgvector, for
//! [`crate::search::store::StoreIndex`]: the dense channel's queries and each
//! large namespace's own HNSW index.
//!
//! - **Exact scans** order by `embedding <=> $query` (cosine distance) over the
//!   namespace's rows (`messages_namespace` index), or over the rows a filter
//!   admits; no HNSW index can serve that expression, so they are exact.
//! - **Approximate scans** order by `embedding::vector(dim) <=> …`, the
//!   expression of a **partial HNSW index per namespace**
//!   (`WHERE namespace = '…'`, `vector_cosine_ops`): a namespace's search never
//!   walks other namespaces' vectors, so no filter in SQL starves the `LIMIT`.
//!   `hnsw.ef_search` and `hnsw.iterative_scan = relaxed_order` are set for the
//!   query's transaction with `set_config(…, true)` (pgvector 0.8: iterative
//!   scans continue until the `LIMIT` is met). The namespace is written into the
//!   query as a literal so that the planner can match the index's predicate.
//!   Until the index is valid the planner scans exactly.
//! - **Builds** run `CREATE INDEX CONCURRENTLY` (writes go on) under one
//!   session advisory lock for every node (concurrent builds on one table wait
//!   for each other anyway): one build at a time, the others are told so and
//!   look again later; an index left invalid by a crash mid-build is
//!   dropped and built again. memoryd never drops a valid one: after a
//!   namespace is deleted its index is empty and serves the name's next life.

use pgvector::Vector;
// Every dynamic statement here is built from an index name (hex digits) and a
// namespace written as an escaped literal (namespace names are
// `[A-Za-z0-9][A-Za-z0-9._:-]*`, [`crate::core::access::NamespaceName`]).
use sqlx::AssertSqlSafe;

use super::{PgStore, db};
use crate::core::error::Result;
use crate::storage::{RowId, VectorScan, VectorTables, sha256_hex};

/// The partial HNSW index of `namespace`: a name PostgreSQL accepts whatever
/// the namespace's length (identifiers stop at 63 bytes).
fn index_name(namespace: &str) -> String {
    format!("memoryd_hnsw_{}", &sha256_hex(namespace.as_bytes())[..24])
}

/// `s` as an SQL string literal (namespace names hold no quote, but a literal
/// is escaped all the same).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Summaries of a namespace, exactly (they are few: one per summarized window).
/// The other exact statements below have the same shape.
const SUMMARIES: &str = "SELECT row_id, (1 - (embedding <=> $2))::real FROM summaries \
     WHERE namespace = $1 ORDER BY embedding <=> $2 LIMIT $3";

fn rows_of(found: Vec<(i64, f32)>) -> Vec<(RowId, f32)> {
    found
        .into_iter()
        .filter(|(_, s)| s.is_finite())
        .map(|(r, s)| (r as RowId, s))
        .collect()
}

const MESSAGES_ALL: &str = "SELECT row_id, (1 - (embedding <=> $2))::real FROM messages \
     WHERE namespace = $1 ORDER BY embedding <=> $2 LIMIT $3";
const MESSAGES_ROWS: &str = "SELECT row_id, (1 - (embedding <=> $2))::real FROM messages \
     WHERE namespace = $1 AND row_id = ANY($4) ORDER BY embedding <=> $2 LIMIT $3";
const SUMMARIES_ROWS: &str = "SELECT row_id, (1 - (embedding <=> $2))::real FROM summaries \
     WHERE namespace = $1 AND row_id = ANY($4) ORDER BY embedding <=> $2 LIMIT $3";

impl PgStore {
    pub(super) async fn nearest_rows(
        &self,
        namespace: &str,
        query: &[f32],
        n: usize,
        scan: VectorScan<'_>,
        tables: VectorTables,
    ) -> Result<Vec<(RowId, f32)>> {
        if n == 0 || matches!(scan, VectorScan::Rows(rows) if rows.is_empty()) {
            return Ok(Vec::new());
        }
        let ns = namespace.to_owned();
        let dim = query.len();
        let q = Vector::from(query.to_vec());
        let limit = n as i64;
        let rows: Option<Vec<i64>> = match scan {
            VectorScan::Rows(rows) => Some(rows.iter().map(|&r| r as i64).collect()),
            _ => None,
        };
        // The approximate messages query: the namespace's partial index.
        let approximate = match scan {
            VectorScan::Approximate { ef_search } if tables.messages => Some((
                ef_search.clamp(1, 1_000).to_string(),
                format!(
                    "SELECT row_id, (1 - (embedding::vector({dim}) <=> $1::vector({dim})))::real \
                     FROM messages WHERE namespace = {ns} \
                     ORDER BY embedding::vector({dim}) <=> $1::vector({dim}) LIMIT $2",
                    ns = literal(namespace)
                ),
            )),
            _ => None,
        };
        let found: Vec<(i64, f32)> = self
            .run(|pool| async move {
                let mut conn = pool.acquire().await.map_err(db)?;
                let mut found: Vec<(i64, f32)> = Vec::new();
                if tables.summaries {
                    let sql = if rows.is_some() {
                        SUMMARIES_ROWS
                    } else {
                        SUMMARIES
                    };
                    found.extend(exact(&mut conn, sql, &ns, &q, limit, rows.as_deref()).await?);
                }
                if let Some((ef, messages)) = approximate {
                    // set_config(…, true) lasts for this transaction only.
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
                    // The namespace's index is the only plan that yields rows in
                    // distance order; with sorts and bitmap scans priced out, stale
                    // statistics (right after a bulk load) or a generic plan cannot
                    // turn the query into a scan of the whole namespace. (Without a
                    // valid index yet, the planner walks messages_namespace and
                    // sorts: exact.)
                    sqlx::query(
                        "SELECT set_config('hnsw.ef_search', $1, true), \
                                set_config('hnsw.iterative_scan', 'relaxed_order', true), \
                                set_config('enable_sort', 'off', true), \
                                set_config('enable_bitmapscan', 'off', true), \
                                set_config('enable_seqscan', 'off', true)",
                    )
                    .bind(ef)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    found.extend(
                        sqlx::query_as::<_, (i64, f32)>(AssertSqlSafe(messages))
                            .bind(&q)
                            .bind(limit)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(db)?,
                    );
                    tx.commit().await.map_err(db)?;
                } else if tables.messages {
                    let sql = if rows.is_some() {
                        MESSAGES_ROWS
                    } else {
                        MESSAGES_ALL
                    };
                    found.extend(exact(&mut conn, sql, &ns, &q, limit, rows.as_deref()).await?);
                }
                Ok(found)
            })
            .await?;
        let mut found = rows_of(found);
        // Best first (an approximate scan's relaxed order included); up to `n`
        // of each table, for the caller's filter to choose from.
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(found)
    }

    pub(super) async fn row_similarities(
        &self,
        query: &[f32],
        rows: &[RowId],
    ) -> Result<Vec<(RowId, f32)>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let q = Vector::from(query.to_vec());
        let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let found: Vec<(i64, f32)> = self
            .run(|pool| async move {
                sqlx::query_as(
                    "SELECT row_id, (1 - (embedding <=> $1))::real FROM messages WHERE row_id = ANY($2) \
                     UNION ALL \
                     SELECT row_id, (1 - (embedding <=> $1))::real FROM summaries WHERE row_id = ANY($2)",
                )
                .bind(&q)
                .bind(&rows)
                .fetch_all(&pool)
                .await
                .map_err(db)
            })
            .await?;
        Ok(rows_of(found))
    }

    pub(super) async fn build_namespace_index(
        &self,
        namespace: &str,
        dim: usize,
        m: usize,
        ef_construction: usize,
    ) -> Result<bool> {
        let name = index_name(namespace);
        // One build at a time across every node: each is a concurrent build on
        // the one `messages` table, and such builds of partial or expression
        // indexes wait for each other (two at once can deadlock).
        let lock = "memoryd:hnsw".to_owned();
        // pgvector's bounds: m 2..=100, ef_construction 4..=1000 and ≥ 2·m.
        let m = m.clamp(2, 100);
        let ef_construction = ef_construction.clamp(4, 1_000).max(2 * m);
        let create = format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON messages \
             USING hnsw ((embedding::vector({dim})) vector_cosine_ops) \
             WITH (m = {m}, ef_construction = {ef_construction}) \
             WHERE namespace = {ns}",
            ns = literal(namespace)
        );
        self.run(|pool| async move {
            let mut conn = pool.acquire().await.map_err(db)?;
            if index_valid(&mut conn, &name).await? == Some(true) {
                return Ok(true);
            }
            let got: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(&lock)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db)?;
            if !got {
                return Ok(false);
            }
            let built = async {
                match index_valid(&mut conn, &name).await? {
                    Some(true) => return Ok(true),
                    // Left by a build that died (its session is gone: builds
                    // hold the lock this session holds now).
                    Some(false) => {
                        sqlx::query(AssertSqlSafe(format!(
                            "DROP INDEX CONCURRENTLY IF EXISTS {name}"
                        )))
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                    }
                    None => {}
                }
                // An HNSW build that outgrows maintenance_work_mem slows down
                // many times (pgvector warns); 100k vectors of 384 take ~300 MB.
                // Raised to 1 GB for this session, never lowered.
                sqlx::query(
                    "SELECT set_config('maintenance_work_mem', '1GB', false) \
                     WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB')",
                )
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                let mut created = sqlx::query(AssertSqlSafe(create))
                    .execute(&mut *conn)
                    .await
                    .map_err(db);
                if created.is_ok() {
                    // Fresh statistics for the planner (a bulk load just happened).
                    created = sqlx::query("ANALYZE messages")
                        .execute(&mut *conn)
                        .await
                        .map_err(db);
                }
                sqlx::query("RESET maintenance_work_mem")
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                created.map(|_| true)
            }
            .await;
            let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                .bind(&lock)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // Never hand back a connection that may still hold the lock.
                conn.detach();
            }
            built
        })
        .await
    }
}

/// Whether the index `name` exists (`None`: it does not) and is valid.
async fn index_valid(conn: &mut sqlx::PgConnection, name: &str) -> Result<Option<bool>> {
    sqlx::query_scalar("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)")
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(db)
}

/// One exact statement of the shape above (`$1` namespace, `$2` query vector,
/// `$3` limit, and `$4` the admitted rows when given).
async fn exact(
    conn: &mut sqlx::PgConnection,
    sql: &'static str,
    namespace: &str,
    query: &Vector,
    limit: i64,
    rows: Option<&[i64]>,
) -> Result<Vec<(i64, f32)>> {
    let mut q = sqlx::query_as::<_, (i64, f32)>(sql)
        .bind(namespace)
        .bind(query)
        .bind(limit);
    if let Some(rows) = rows {
        q = q.bind(rows);
    }
    q.fetch_all(conn).await.map_err(db)
}
