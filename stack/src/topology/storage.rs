//! The storage zones: the raw, rejects, processed and backups buckets.

use super::*;

/// The storage zones' buckets.
pub(super) struct Zones {
    pub(super) raw: LogicalId,
    pub(super) rejects: LogicalId,
    pub(super) processed: LogicalId,
    pub(super) backups: LogicalId,
    /// `HIRING_<ZONE>_URL` → `s3://<bucket>/`, for the functions' and the API's environment.
    pub(super) urls: Vec<(String, Value)>,
}

impl StageBuilder<'_> {
    /// Storage zones.
    pub(super) fn buckets(&mut self) -> Zones {
        let (cfg, data_keep) = (self.cfg, self.data_keep);
        let raw = private_bucket(
            &mut self.t,
            "RawBucket",
            cfg,
            None,
            json!({ "NotificationConfiguration": { "EventBridgeConfiguration": { "EventBridgeEnabled": true } } }),
            data_keep,
        );
        let rejects = private_bucket(&mut self.t, "RejectsBucket", cfg, None, json!({}), data_keep);
        // A load's Parquet file waits under _staging/ until its load commits, then moves to its
        // key (hiring::processed::staging_key); what a crash leaves there (a load that never
        // committed, or one whose step and its retries all died before the move) expires after
        // a week, and the copies the moves leave behind (a versioned bucket keeps a deleted
        // object as a noncurrent version) after a day ("Expiring objects", S3 user guide).
        let staged = json!({ "ExtraLifecycleRules": [
            {
                "Id": "expire-staged-parquet",
                "Status": "Enabled",
                "Prefix": "_staging/",
                "ExpirationInDays": 7,
                "NoncurrentVersionExpiration": { "NoncurrentDays": 1 }
            },
            {
                "Id": "remove-staged-delete-markers",
                "Status": "Enabled",
                "Prefix": "_staging/",
                "ExpiredObjectDeleteMarker": true
            }
        ] });
        let processed = private_bucket(&mut self.t, "ProcessedBucket", cfg, None, staged, data_keep);
        let backups = private_bucket(&mut self.t, "BackupsBucket", cfg, None, json!({}), data_keep);
        let zone_urls = |bucket_of: &[(&str, &LogicalId)]| -> Vec<(String, Value)> {
            bucket_of
                .iter()
                .map(|(zone, id)| (format!("HIRING_{}_URL", zone.to_uppercase()), sub(format!("s3://${{{id}}}/"))))
                .collect()
        };
        let urls = zone_urls(&[("raw", &raw), ("rejects", &rejects), ("processed", &processed), ("backups", &backups)]);
        Zones { raw, rejects, processed, backups, urls }
    }
}
