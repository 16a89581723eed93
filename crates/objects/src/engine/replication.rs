//! Replication (see "Replication" in the parent module's documentation): the durable queue
//! of `s3_replication` rows, writing replicas with their source's version id, and recording
//! each outcome on the source version.

use super::*;

impl Objects {
    /// Adds one `s3_replication` row per rule in `targets` for version `doc` (which has its
    /// version id) of `bucket/key` to `ops`. Returns whether any was added.
    pub(super) fn queue_replications(
        &self,
        bucket: &str,
        key: &str,
        doc: &ObjectDoc,
        targets: Vec<ReplicationRule>,
        ops: &mut Vec<MetaOp>,
    ) -> Result<bool> {
        let Some(vid) = doc.vid.as_deref() else {
            return Ok(false);
        };
        for r in &targets {
            let task = ReplicationTask {
                bucket: bucket.into(),
                key: key.into(),
                version_id: vid.into(),
                destination_bucket: r.destination_bucket.clone(),
                rule_id: r.id.clone(),
                storage_class: r.storage_class.clone(),
                delete_marker: doc.delete_marker,
            };
            ops.push(put(
                T_REPLICATION,
                replication_key(bucket, key, vid, &r.destination_bucket),
                to_json(&task)?,
            ));
        }
        Ok(!targets.is_empty())
    }

    /// Notified after each commit that queued replications.
    pub fn replication_notify(&self) -> Arc<tokio::sync::Notify> {
        self.replication_notify.clone()
    }

    /// Up to `limit` queued replications, in key order. A task stays queued until
    /// [`Objects::finish_replication`] records its outcome.
    pub fn pending_replications(&self, limit: usize) -> Result<Vec<ReplicationTask>> {
        let snap = self.meta.snapshot()?;
        let t = snap.table(T_REPLICATION)?;
        let mut out = Vec::new();
        for item in t.range(Bound::Unbounded, Bound::Unbounded)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            out.push(from_json(T_REPLICATION, &k, &v)?);
        }
        Ok(out)
    }

    /// The replications S3 Batch Replication does for version `version_id` (`None`: the
    /// current version) of `bucket/key` under the bucket's current configuration: one task
    /// per destination whose rule matches the version's key and tags (none when no rule
    /// matches). Also returns the configuration (its role acts). A bucket without a
    /// configuration is `InvalidRequest`; a delete marker is `MethodNotAllowed`'s
    /// [`Error::DeleteMarker`].
    pub fn replication_tasks_for(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ReplicationConfig, Vec<ReplicationTask>)> {
        let snap = self.meta.snapshot()?;
        let Some(b) = Self::snap_doc::<BucketDoc>(&snap.table(T_BUCKETS)?, T_BUCKETS, bucket)? else {
            return Err(Error::NoSuchBucket { bucket: bucket.into() });
        };
        let Some(cfg) = b.replication_rules else {
            return Err(Error::InvalidRequest(format!(
                "The source bucket {bucket} has no replication configuration"
            )));
        };
        let doc = Self::object_doc_in(&snap, bucket, key, version_id)?;
        let vid = doc.vid.clone().unwrap_or_else(|| NULL_VERSION.into());
        let tasks = cfg
            .targets(key, &doc.tags)
            .into_iter()
            .map(|r| ReplicationTask {
                bucket: bucket.into(),
                key: key.into(),
                version_id: vid.clone(),
                destination_bucket: r.destination_bucket.clone(),
                rule_id: r.id.clone(),
                storage_class: r.storage_class.clone(),
                delete_marker: false,
            })
            .collect();
        Ok((cfg, tasks))
    }

    /// Writes the replica of `task`'s version into its destination bucket (which must have
    /// versioning enabled): the same version id (a `null` source version gets a new one),
    /// body, ETag, Last-Modified, metadata and tags, with status `REPLICA`. A replica whose
    /// version id the destination already holds replaces that version. It becomes the
    /// destination's current version unless the destination has a newer one.
    pub async fn replicate(&self, task: &ReplicationTask) -> Result<ObjectInfo> {
        let dst = self.bucket_doc(&task.destination_bucket)?;
        if dst.versioning != Some(Versioning::Enabled) {
            return Err(Error::InvalidRequest(
                "Destination bucket must have versioning enabled.".into(),
            ));
        }
        let found = {
            let snap = self.meta.snapshot()?;
            find_version(&snap.table(T_VERSIONS)?, &task.bucket, &task.key, &task.version_id)?
        };
        let Some((_, src)) = found else {
            return Err(Error::NoSuchVersion {
                key: task.key.clone(),
                version_id: task.version_id.clone(),
            });
        };
        if src.delete_marker {
            let mut marker = ObjectDoc::delete_marker(src.last_modified_ms);
            marker.replication_status = Some(ReplicationStatus::Replica);
            return self.install_replica(task, marker, Vec::new()).await;
        }
        let (src, stored) = self
            .open_object(&task.bucket, &task.key, Some(&task.version_id))
            .await?;
        let algorithm = src.checksum.as_ref().map(|c| c.0);
        let body = stored.stream(0, src.size).await?;
        let mut staged = self
            .stage(body, Origin::Stored, u64::MAX, algorithm, None, None)
            .await?;
        let adopt = staged.adopt_op();
        let doc = ObjectDoc {
            version: DOC_VERSION,
            blob: staged.id.clone(),
            size: staged.size,
            etag: src.etag.clone(),
            last_modified_ms: src.last_modified_ms,
            headers: src.headers.clone(),
            checksum: staged.digests.checksum.clone().or(src.checksum.clone()),
            parts_count: src.parts_count,
            tags: src.tags.clone(),
            inline: staged.inline,
            vid: None,
            vsort: None,
            delete_marker: false,
            replication_status: Some(ReplicationStatus::Replica),
        };
        let (id, inline) = (staged.id, staged.inline);
        let result = self.install_replica(task, doc, vec![adopt]).await;
        if result.is_err() && !inline {
            self.discard(&id).await;
        }
        result
    }

    /// Commits replica `doc` of `task` as a version of its destination (see
    /// [`Objects::replicate`]), with its event.
    async fn install_replica(
        &self,
        task: &ReplicationTask,
        mut doc: ObjectDoc,
        extra: Vec<MetaOp>,
    ) -> Result<ObjectInfo> {
        let (bucket, key) = (task.destination_bucket.as_str(), task.key.as_str());
        let mut retired = Vec::new();
        let info = {
            let _b = self.buckets_lock.read().await;
            let _o = self.object_lock(bucket, key).lock().await;
            if self.bucket_doc(bucket)?.versioning != Some(Versioning::Enabled) {
                return Err(Error::InvalidRequest(
                    "Destination bucket must have versioning enabled.".into(),
                ));
            }
            let rows = {
                let snap = self.meta.snapshot()?;
                key_versions(&snap.table(T_VERSIONS)?, bucket, key, usize::MAX)?
            };
            let newest = rows.first().map(|(k, _)| stamp_of(k).to_string());
            let stamp = if is_version_id(&task.version_id) && task.version_id != NULL_VERSION {
                task.version_id.clone()
            } else {
                self.new_stamp(newest.as_deref())?
            };
            doc.vid = Some(stamp.clone());
            doc.vsort = Some(stamp.clone());
            let mut ops = extra;
            if let Some((_, old)) = rows.iter().find(|(k, _)| stamp_of(k) == stamp)
                && !old.delete_marker
            {
                self.release(&old.blob, old.inline, &mut ops, &mut retired)?;
            }
            let json = to_json(&doc)?;
            ops.push(put(T_VERSIONS, ver_key(bucket, key, &stamp), json.clone()));
            // Stamps sort newest first: the replica is current unless a newer row exists.
            if newest.as_deref().is_none_or(|n| stamp.as_str() <= n) {
                if doc.delete_marker {
                    ops.push(del(T_OBJECTS, obj_key(bucket, key)));
                } else {
                    ops.push(put(T_OBJECTS, obj_key(bucket, key), json));
                }
            }
            let event = EventDraft {
                name: if doc.delete_marker {
                    "ObjectRemoved:DeleteMarkerCreated"
                } else {
                    "ObjectCreated:Put"
                },
                bucket: bucket.into(),
                key: key.into(),
                size: doc.size,
                etag: doc.etag.clone(),
                version_id: doc.vid.clone(),
            };
            self.commit(ops, vec![event]).await?;
            doc.info(bucket, key)
        };
        self.retire(retired).await;
        Ok(info)
    }

    /// Starts another round of replication of version `version_id` of `bucket/key` (S3
    /// Batch Replication): its status becomes `PENDING` (a replica's stays `REPLICA`), so a
    /// version that failed before ends `COMPLETED` when every destination now succeeds.
    pub async fn restart_replication(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        let _b = self.buckets_lock.read().await;
        let _o = self.object_lock(bucket, key).lock().await;
        let snap = self.meta.snapshot()?;
        let Some((vrow, mut d)) = find_version(&snap.table(T_VERSIONS)?, bucket, key, version_id)? else {
            return Ok(());
        };
        if d.delete_marker || d.replication_status == Some(ReplicationStatus::Replica) {
            return Ok(());
        }
        d.replication_status = Some(ReplicationStatus::Pending);
        let json = to_json(&d)?;
        let mut ops = Vec::new();
        let k = obj_key(bucket, key);
        let mirror: Option<ObjectDoc> = Self::snap_doc(&snap.table(T_OBJECTS)?, T_OBJECTS, &k)?;
        if mirror.is_some_and(|m| m.vid == d.vid) {
            ops.push(put(T_OBJECTS, k, json.clone()));
        }
        ops.push(put(T_VERSIONS, vrow, json));
        drop(snap);
        self.commit(ops, Vec::new()).await
    }

    /// Records the outcome of `task` (queued or not): deletes its row and sets the source
    /// version's `x-amz-replication-status` (`FAILED` if this or an earlier destination of
    /// the same round failed, else `PENDING` while other destinations are queued, else
    /// `COMPLETED`), in one transaction. A source version deleted meanwhile only loses the row.
    pub async fn finish_replication(&self, task: &ReplicationTask, ok: bool) -> Result<()> {
        let (bucket, key) = (task.bucket.as_str(), task.key.as_str());
        let _b = self.buckets_lock.read().await;
        let _o = self.object_lock(bucket, key).lock().await;
        let row = replication_key(bucket, key, &task.version_id, &task.destination_bucket);
        let mut ops = vec![del(T_REPLICATION, row.clone())];
        let snap = self.meta.snapshot()?;
        let version_prefix = format!("{bucket}\0{key}\0{}\0", task.version_id);
        let mut others = 0;
        let t = snap.table(T_REPLICATION)?;
        for item in t.range(Bound::Included(version_prefix.as_str()), Bound::Unbounded)? {
            let (k, _) = item?;
            if !k.starts_with(&version_prefix) {
                break;
            }
            if k != row {
                others += 1;
            }
        }
        if let Some((vrow, mut d)) = find_version(&snap.table(T_VERSIONS)?, bucket, key, &task.version_id)?
            && !d.delete_marker
        {
            let status = if !ok || d.replication_status == Some(ReplicationStatus::Failed) {
                ReplicationStatus::Failed
            } else if others > 0 {
                ReplicationStatus::Pending
            } else {
                ReplicationStatus::Completed
            };
            // A replica stays a replica (S3 Batch Replication may copy replicas onwards).
            if d.replication_status != Some(ReplicationStatus::Replica) {
                d.replication_status = Some(status);
                let json = to_json(&d)?;
                let k = obj_key(bucket, key);
                let mirror: Option<ObjectDoc> = Self::snap_doc(&snap.table(T_OBJECTS)?, T_OBJECTS, &k)?;
                if mirror.is_some_and(|m| m.vid == d.vid) {
                    ops.push(put(T_OBJECTS, k, json.clone()));
                }
                ops.push(put(T_VERSIONS, vrow, json));
            }
        }
        drop(snap);
        self.commit(ops, Vec::new()).await
    }
}
