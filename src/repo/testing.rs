//! `memory_repo()`: an initialised repository on `InMemory` storage with the cheapest Argon2id
//! parameters and an index cache in a temporary folder, for unit tests.

use super::Repository;
use super::config::RepoConfig;
use crate::backend::{Backend, StoreBackend};
use crate::crypto::KdfParams;
use std::sync::Arc;

pub struct TestRepo {
    pub repo: Repository,
    pub cache: tempfile::TempDir,
}

pub fn memory_repo() -> TestRepo {
    repo_on(Arc::new(StoreBackend::memory().unwrap()))
}

pub fn repo_on(backend: Arc<dyn Backend>) -> TestRepo {
    let config = RepoConfig { pack_size: RepoConfig::MIN_PACK_SIZE, ..RepoConfig::new() };
    let mut repo = Repository::init(backend, "memory", b"test", KdfParams::INSECURE_FOR_TESTS, config).unwrap();
    let cache = tempfile::tempdir().unwrap();
    repo.load_index(cache.path()).unwrap();
    TestRepo { repo, cache }
}
