//! [`CortexBuilder`]: the seed crate's builder, with random keys and adoption.

use crate::cortex::Cortex;
use crate::error::{CortexResult, ErrorKind};
use crate::key::Key;
use crate::marker::ShmSafe;
use crate::sync::CortexSync;

/// Builds a [`Cortex`] step by step.
///
/// Without [`key`](Self::key) the segment gets a random key (as with
/// [`random_key`](Self::random_key)); read it back with [`Cortex::key`].
#[derive(Debug)]
#[must_use = "a builder does nothing until with_default_lock or with_lock"]
pub struct CortexBuilder<T> {
    data: T,
    key: Option<Key>,
    force_ownership: bool,
}

impl<T: ShmSafe> CortexBuilder<T> {
    /// A builder for a segment holding `data`.
    pub fn new(data: T) -> Self {
        Self {
            data,
            key: None,
            force_ownership: false,
        }
    }

    /// Uses `key`.
    pub fn key(mut self, key: i32) -> Self {
        self.key = Some(Key(key));
        self
    }

    /// Draws a random key from the kernel's random source, drawing again while the key is
    /// taken.
    pub fn random_key(mut self) -> Self {
        self.key = None;
        self
    }

    /// If a segment of the same type and lock already exists on the key, take it over:
    /// write the data into it under its lock and remove it when this handle drops, as if
    /// this process had created it.
    pub fn force_ownership(mut self) -> Self {
        self.force_ownership = true;
        self
    }

    /// Builds with the lock's default settings.
    ///
    /// # Errors
    ///
    /// As [`Cortex::new`], and with `force_ownership` as [`Cortex::attach`].
    pub fn with_default_lock<L: CortexSync>(self) -> CortexResult<Cortex<T, L>> {
        self.with_lock(&L::Settings::default())
    }

    /// Builds with the given lock settings.
    ///
    /// # Errors
    ///
    /// As [`Cortex::new`], and with `force_ownership` as [`Cortex::attach`].
    pub fn with_lock<L: CortexSync>(self, settings: &L::Settings) -> CortexResult<Cortex<T, L>> {
        let Self {
            data,
            key,
            force_ownership,
        } = self;
        let Some(key) = key else {
            return Cortex::create_random(settings, |slot| *slot = data);
        };
        let mut data = Some(data);
        let created = Cortex::<T, L>::new_with(key.raw(), Some(settings), |slot| {
            if let Some(value) = data.take() {
                *slot = value;
            }
        });
        match (created, data) {
            (Err(e), Some(value)) if force_ownership && e.kind() == ErrorKind::AlreadyExists => {
                let cortex = Cortex::<T, L>::adopt(key)?;
                cortex.write(value)?;
                Ok(cortex)
            }
            (result, _) => result,
        }
    }
}
