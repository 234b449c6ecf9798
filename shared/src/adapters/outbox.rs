//! The outbox: a transport that writes each request, without credentials, as one JSON line in
//! `<dir>/<destination>.jsonl` and answers as the platform would on success.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::destinations::{OutboundRequest, TransportResponse};
use crate::ports::{Transport, TransportError};

/// Appends requests to one JSON-lines file per destination.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    files: Mutex<HashMap<&'static str, BufWriter<File>>>,
}

impl Outbox {
    /// An outbox writing into `dir`, which is created when missing.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `destination`'s requests.
    pub fn path_for(&self, destination: &str) -> PathBuf {
        self.dir.join(format!("{destination}.jsonl"))
    }

    fn write(&self, request: &OutboundRequest) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&request.recorded())?;
        line.push(b'\n');
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = match files.entry(request.destination) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path_for(request.destination))?;
                entry.insert(BufWriter::new(file))
            }
        };
        file.write_all(&line)?;
        file.flush()
    }
}

#[async_trait]
impl Transport for Outbox {
    async fn send(&self, request: &OutboundRequest) -> Result<TransportResponse, TransportError> {
        self.write(request)
            .map_err(|error| TransportError::Invalid {
                destination: request.destination.to_owned(),
                source: Box::new(error),
            })?;
        Ok(TransportResponse {
            status: 202,
            retry_after: None,
            body: String::new(),
        })
    }
}
