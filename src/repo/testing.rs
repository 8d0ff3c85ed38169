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

/// [`memory_repo`] with `config` (its pack size made the smallest), e.g. of format 1.
pub fn memory_repo_of(config: RepoConfig) -> TestRepo {
    repo_with(Arc::new(StoreBackend::memory().unwrap()), config)
}

pub fn repo_on(backend: Arc<dyn Backend>) -> TestRepo {
    repo_with(backend, RepoConfig::new())
}

fn repo_with(backend: Arc<dyn Backend>, config: RepoConfig) -> TestRepo {
    let config = RepoConfig { pack_size: RepoConfig::MIN_PACK_SIZE, ..config };
    let mut repo = Repository::init(backend, "memory", b"test", KdfParams::INSECURE_FOR_TESTS, config).unwrap();
    let cache = tempfile::tempdir().unwrap();
    repo.load_index(cache.path()).unwrap();
    TestRepo { repo, cache }
}
