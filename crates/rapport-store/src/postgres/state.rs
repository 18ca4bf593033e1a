//! Processor state in `state(profile_id, namespace, key, value)`, distributed by profile,
//! committed atomically with its consumer's offset.

use super::pool::prepare;
use super::{PostgresStore, last_wins, pg};
use crate::{Offset, Result, StateStore, StateWrite};

impl StateStore for PostgresStore {
    fn state_get(&self, namespace: &str, profile: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let rows = self.rows(
            "select value from state where profile_id = $1 and namespace = $2 and key = $3",
            &[&profile, &namespace, &key],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn state_scan(&self, namespace: &str, profile: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let rows = self.rows(
            "select key, value from state where profile_id = $1 and namespace = $2
             order by key",
            &[&profile, &namespace],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn state_scan_range(
        &self,
        namespace: &str,
        profile: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let empty: &[u8] = &[];
        let rows = self.rows(
            "select key, value from state where profile_id = $1 and namespace = $2
             and ($3::boolean is false or key > $4) order by key limit $5",
            &[
                &profile,
                &namespace,
                &after.is_some(),
                &after.unwrap_or(empty),
                &limit,
            ],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn state_commit(&self, writes: &[StateWrite], consumer: Option<(&str, Offset)>) -> Result<()> {
        if writes.is_empty() && consumer.is_none() {
            return Ok(());
        }
        let writes = last_wins(writes, |w| (&w.profile, &w.namespace, &w.key));
        let (mut put_p, mut put_n, mut put_k, mut put_v) = (vec![], vec![], vec![], vec![]);
        let (mut del_p, mut del_n, mut del_k) = (vec![], vec![], vec![]);
        for w in writes {
            match &w.value {
                Some(v) => {
                    put_p.push(w.profile.as_str());
                    put_n.push(w.namespace.as_str());
                    put_k.push(w.key.as_slice());
                    put_v.push(v.as_slice());
                }
                None => {
                    del_p.push(w.profile.as_str());
                    del_n.push(w.namespace.as_str());
                    del_k.push(w.key.as_slice());
                }
            }
        }
        self.in_tx("set local synchronous_commit = off", |tx, cache| {
            if !put_p.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into state (profile_id, namespace, key, value)
                     select * from unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])
                     on conflict (profile_id, namespace, key)
                     do update set value = excluded.value",
                )?;
                tx.execute(&s, &[&put_p, &put_n, &put_k, &put_v])
                    .map_err(pg)?;
            }
            if !del_p.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "delete from state s
                     using unnest($1::text[], $2::text[], $3::bytea[]) as d(p, n, k)
                     where s.profile_id = d.p and s.namespace = d.n and s.key = d.k",
                )?;
                tx.execute(&s, &[&del_p, &del_n, &del_k]).map_err(pg)?;
            }
            if let Some((name, offset)) = consumer {
                PostgresStore::commit_consumer(tx, cache, name, offset)?;
            }
            Ok(())
        })
    }

    fn delete_profile(&self, profile: &str) -> Result<()> {
        self.in_tx("set local synchronous_commit = on", |tx, cache| {
            let s = prepare(tx, cache, "delete from state where profile_id = $1")?;
            tx.execute(&s, &[&profile]).map_err(pg)?;
            Ok(())
        })
    }
}
