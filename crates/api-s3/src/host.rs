//! Path-style and virtual-hosted-style addressing. `bucket.localhost:4566` (or any configured
//! base domain) names a bucket; any other host (`localhost`, `127.0.0.1`, a machine name) is
//! path-style. The port is ignored. Hosts prefixed with an account id for S3 Control never
//! reach here: the edge routes `/v20180820/` by path first.

use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Result, s3_error};

/// Our host parser.
#[derive(Debug, Clone)]
pub struct Hosts {
    base_domains: Vec<String>,
}

impl Hosts {
    /// Virtual-hosted buckets under each of `base_domains` (e.g. `localhost`).
    pub fn new(base_domains: Vec<String>) -> Self {
        Self { base_domains }
    }
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        if host.starts_with('[') {
            return Ok(VirtualHost::new(host)); // an IPv6 literal: path-style
        }
        let name = match host.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        if name.is_empty() {
            return Err(s3_error!(InvalidRequest, "Invalid host header"));
        }
        for base in &self.base_domains {
            if let Some(bucket) = name.strip_suffix(base.as_str()).and_then(|b| b.strip_suffix('.'))
                && !bucket.is_empty()
            {
                return Ok(VirtualHost::new(name).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_and_path_style() {
        let h = Hosts::new(vec!["localhost".into()]);
        let vh = h.parse_host_header("my-bucket.localhost:4566").expect("host");
        assert_eq!(vh.bucket(), Some("my-bucket"));
        for host in [
            "localhost:4566",
            "127.0.0.1:4566",
            "localhost",
            "example.internal",
            "[::1]:4566",
        ] {
            assert_eq!(h.parse_host_header(host).expect("host").bucket(), None, "{host}");
        }
    }
}
