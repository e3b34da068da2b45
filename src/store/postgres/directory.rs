//! The directory in PostgreSQL: domains, lists and members. A member row is
//! keyed (list, domain, local), so a scan yields a list's members grouped by
//! domain, as fan-out cuts chunks; the generated `key` column (`local@domain`)
//! and its index serve `members_page`. A member's bounce and moderation
//! flags are written by bounce.rs and moderation.rs.

use deadpool_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use super::{col, i64_of, json, member_parts, pg_err};
use crate::model::{DeliveryMode, Domain, List, Member};
use crate::store::{rules, DeliveryPage, Result, StoreError};

pub async fn create_domain(c: &Client, domain: &Domain) -> Result<()> {
    let n = c
        .execute(
            "INSERT INTO domains (name, data) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&domain.name, &Json(domain)],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::Exists(format!("domain {}", domain.name)));
    }
    Ok(())
}

pub async fn domain(c: &Client, name: &str) -> Result<Option<Domain>> {
    let row = c
        .query_opt("SELECT data FROM domains WHERE name = $1", &[&name])
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "domains", 0)).transpose()
}

pub async fn domains(c: &Client) -> Result<Vec<Domain>> {
    let rows = c
        .query("SELECT data FROM domains ORDER BY name", &[])
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "domains", 0)).collect()
}

pub async fn update_domain(c: &Client, domain: &Domain) -> Result<()> {
    let n = c
        .execute(
            "UPDATE domains SET data = $2 WHERE name = $1",
            &[&domain.name, &Json(domain)],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("domain {}", domain.name)));
    }
    Ok(())
}

pub async fn delete_domain(c: &mut Client, name: &str) -> Result<()> {
    // The guard and the delete are one step: the domain row is locked
    // first, and `create_list` locks it too, so a list being created in
    // the domain on another host is either seen here or created after.
    let tx = c.transaction().await.map_err(pg_err)?;
    let found = tx
        .query_opt("SELECT 1 FROM domains WHERE name = $1 FOR UPDATE", &[&name])
        .await
        .map_err(pg_err)?;
    if found.is_none() {
        return Err(StoreError::NotFound(format!("domain {name}")));
    }
    let rows = tx
        .query(
            "SELECT data FROM lists WHERE domain = $1 ORDER BY key",
            &[&name],
        )
        .await
        .map_err(pg_err)?;
    let lists = rows
        .iter()
        .map(|r| json(r, "lists", 0))
        .collect::<Result<Vec<List>>>()?;
    rules::may_delete_domain(name, &lists)?;
    tx.execute("DELETE FROM domains WHERE name = $1", &[&name])
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

pub async fn create_list(c: &mut Client, list: &List) -> Result<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    // Holds off `delete_domain` (which locks the row FOR UPDATE) until
    // the list is committed; a list may also be created without its
    // domain record, as in the embedded store.
    tx.execute(
        "SELECT 1 FROM domains WHERE name = $1 FOR KEY SHARE",
        &[&list.address.domain()],
    )
    .await
    .map_err(pg_err)?;
    let n = tx
        .execute(
            "INSERT INTO lists (key, domain, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&list.key(), &list.address.domain(), &Json(list)],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::Exists(format!("list {}", list.address)));
    }
    tx.commit().await.map_err(pg_err)
}

pub async fn list(c: &Client, key: &str) -> Result<Option<List>> {
    let row = c
        .query_opt("SELECT data FROM lists WHERE key = $1", &[&key])
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "lists", 0)).transpose()
}

pub async fn lists(c: &Client, domain: Option<&str>) -> Result<Vec<List>> {
    let rows = c
        .query(
            "SELECT data FROM lists WHERE $1::text IS NULL OR domain = $1 ORDER BY key",
            &[&domain],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "lists", 0)).collect()
}

pub async fn update_list(c: &Client, list: &List) -> Result<()> {
    let n = c
        .execute(
            "UPDATE lists SET data = $2 WHERE key = $1",
            &[&list.key(), &Json(list)],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("list {}", list.address)));
    }
    Ok(())
}

pub async fn delete_list(c: &Client, key: &str) -> Result<()> {
    // Its members (ON DELETE CASCADE) and its digest go with it in the
    // same statement, so no crash leaves any of them behind a deleted list
    // to come back with a new list of the same name.
    let n = c
        .execute(
            "WITH entries AS (DELETE FROM digest_entries WHERE list = $1), \
                  issues AS (DELETE FROM digest_issues WHERE list = $1) \
             DELETE FROM lists WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(pg_err)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("list {key}")));
    }
    Ok(())
}

pub async fn add_members(c: &Client, list: &str, members: &[Member]) -> Result<Vec<bool>> {
    let exists = c
        .query_opt("SELECT 1 FROM lists WHERE key = $1", &[&list])
        .await
        .map_err(pg_err)?
        .is_some();
    if !exists {
        return Err(StoreError::NotFound(format!("list {list}")));
    }
    let mut domains = Vec::with_capacity(members.len());
    let mut locals = Vec::with_capacity(members.len());
    let mut data = Vec::with_capacity(members.len());
    for m in members {
        let (d, l) = member_parts(&m.address.key());
        domains.push(d);
        locals.push(l);
        data.push(serde_json::to_value(m)?);
    }
    let rows = c
        .query(
            "INSERT INTO members (list, domain, local, data)
                 SELECT $1, d, l, j FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS t(d, l, j)
                 ON CONFLICT DO NOTHING
                 RETURNING domain, local",
            &[&list, &domains, &locals, &data],
        )
        .await
        .map_err(|e| match e.code() {
            Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => {
                StoreError::NotFound(format!("list {list}"))
            }
            _ => pg_err(e),
        })?;
    let mut new = rows
        .iter()
        .map(|r| {
            Ok((
                col::<String>(r, "members", 0)?,
                col::<String>(r, "members", 1)?,
            ))
        })
        .collect::<Result<std::collections::HashSet<(String, String)>>>()?;
    // The first occurrence of a key in the batch is the new one.
    Ok(domains
        .into_iter()
        .zip(locals)
        .map(|k| new.remove(&k))
        .collect())
}

/// Refreshes the planner's statistics of `members` (ANALYZE) when the
/// `unanalyzed` rows this process inserted since its last refresh number at
/// least 1,000 and more than PostgreSQL thinks the table holds; says whether
/// it did.
///
/// Right after a bulk import autovacuum has not yet looked at the table (it
/// does every minute), and the planner takes a list of a million members
/// for an empty table: it then read each page of a post's audience by a
/// bitmap scan and a sort of the whole list, a second a page, 41.6 s to plan
/// a post to 1,000,000 members against 2.5 s for one pass in index order.
/// Refreshing when the table has doubled costs an import log2 of its size
/// in refreshes, each a fixed sample of the table.
pub async fn refresh_member_statistics(c: &Client, unanalyzed: u64) -> Result<bool> {
    if unanalyzed < 1000 {
        return Ok(false);
    }
    let row = c
        .query_one(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'members'::regclass",
            &[],
        )
        .await
        .map_err(pg_err)?;
    if i64_of(unanalyzed) <= col::<i64>(&row, "pg_class", 0)? {
        return Ok(false);
    }
    c.batch_execute("ANALYZE members").await.map_err(pg_err)?;
    Ok(true)
}

pub async fn remove_member(c: &Client, list: &str, member_key: &str) -> Result<bool> {
    let (domain, local) = member_parts(member_key);
    let n = c
        .execute(
            "DELETE FROM members WHERE list = $1 AND domain = $2 AND local = $3",
            &[&list, &domain, &local],
        )
        .await
        .map_err(pg_err)?;
    Ok(n > 0)
}

pub async fn members(c: &Client, list: &str) -> Result<Vec<Member>> {
    let rows = c
        .query(
            "SELECT data FROM members WHERE list = $1 ORDER BY domain, local",
            &[&list],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "members", 0)).collect()
}

pub async fn members_page(
    c: &Client,
    list: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Member>> {
    // A range scan of members_list_key ('' sorts before every key).
    let rows = c
        .query(
            "SELECT data FROM members
                 WHERE list = $1 AND key > coalesce($2::text, '')
                 ORDER BY key LIMIT $3",
            &[&list, &after, &i64_of(limit as u64)],
        )
        .await
        .map_err(pg_err)?;
    rows.iter().map(|r| json(r, "members", 0)).collect()
}

/// A page of an audience's addresses. The `regular` audience (every
/// post's) is a range scan of the primary key (list, domain, local):
/// grouped by domain, as the embedded store orders them, the other members
/// filtered out. Another mode's (a digest issue's) is a range scan of
/// `members_audience` (migration 0006), which holds only the members of a
/// mode other than `regular`, in the same order. One row more than the
/// page is read to know whether the list goes on. The row comparison spans
/// the whole index key, so it bounds the index scan; on (domain, local)
/// alone PostgreSQL scans the list from its start for every page
/// (quadratic: 97 s to plan 1,000,000 members).
pub async fn audience_page(
    c: &Client,
    list: &str,
    audience: DeliveryMode,
    received_at: u64,
    after: Option<&str>,
    limit: usize,
) -> Result<DeliveryPage> {
    // Only the address leaves the database, NULL for a member filtered
    // out; the filters read the record with the defaults `Member`
    // deserializes with. The mode is a literal (one of the enum's names),
    // so the planner can match the partial index's predicate.
    let mode = audience.name();
    let select = format!(
        "SELECT domain, local,
                CASE WHEN coalesce((data->>'delivery_enabled')::boolean, true)
                          AND coalesce((data->>'added_at')::bigint, 0) <= $2
                          AND delivery_mode = '{mode}'
                     THEN data->>'address' END
           FROM members WHERE list = $1"
    );
    let limit = limit.max(1);
    let (domain, local) = after.map(member_parts).unwrap_or_default();
    let cmp = if after.is_some() { ">" } else { ">=" };
    let range = if audience == DeliveryMode::Regular {
        format!("AND (list, domain, local) {cmp} ($1, $3, $4)")
    } else {
        format!(
            "AND delivery_mode = '{mode}' AND delivery_mode <> 'regular'
             AND (list, delivery_mode, domain, local) {cmp} ($1, '{mode}', $3, $4)"
        )
    };
    let stmt = c
        .prepare_cached(&format!("{select} {range} ORDER BY domain, local LIMIT $5"))
        .await
        .map_err(pg_err)?;
    let rows = c
        .query(
            &stmt,
            &[
                &list,
                &i64_of(received_at),
                &domain,
                &local,
                &i64_of(limit as u64 + 1),
            ],
        )
        .await
        .map_err(pg_err)?;
    let mut page = DeliveryPage::default();
    for r in rows.iter().take(limit) {
        if let Some(a) = col::<Option<String>>(r, "members", 2)? {
            page.addresses.push(a);
        }
    }
    if rows.len() > limit {
        let last = &rows[limit - 1];
        page.next = Some(format!(
            "{}@{}",
            col::<&str>(last, "members", 1)?,
            col::<&str>(last, "members", 0)?
        ));
    }
    Ok(page)
}

/// Sets a member's mode in its record, nothing else, in one statement.
pub async fn set_delivery_mode(
    c: &Client,
    list: &str,
    key: &str,
    mode: DeliveryMode,
) -> Result<Option<Member>> {
    let (domain, local) = member_parts(key);
    let row = c
        .query_opt(
            "UPDATE members SET data = jsonb_set(data, '{delivery_mode}', to_jsonb($4::text))
             WHERE list = $1 AND domain = $2 AND local = $3 RETURNING data",
            &[&list, &domain, &local, &mode.name()],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| json(&r, "members", 0)).transpose()
}

pub async fn member_count(c: &Client, list: &str) -> Result<u64> {
    let row = c
        .query_one("SELECT count(*) FROM members WHERE list = $1", &[&list])
        .await
        .map_err(pg_err)?;
    Ok(col::<i64>(&row, "members", 0)? as u64)
}
