//! The products the connector serves, changeable at run time.
//!
//! Seeded from the configuration at bind, then from what the store kept of the
//! admin API's registrations; the admin API swaps entries in and out. Readers
//! (every webhook, stream, pull read and MCP call) take a read lock for the
//! time of a hash lookup and an `Arc` clone, never across an `await`, so a
//! registration or rotation is seen by the next request and costs the hot path
//! one uncontended atomic read-lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::server::Product;

/// The live set of products, by id.
#[derive(Default)]
pub(crate) struct Registry {
    products: RwLock<HashMap<String, Arc<Product>>>,
}

impl Registry {
    /// A registry holding `products`.
    pub fn new(products: HashMap<String, Arc<Product>>) -> Self {
        Self {
            products: RwLock::new(products),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Product>>> {
        // Writers only insert or remove whole entries: a panic cannot leave a
        // half-updated map behind.
        self.products.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Product>>> {
        self.products.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The product with this id now.
    pub fn get(&self, product_id: &str) -> Option<Arc<Product>> {
        self.read().get(product_id).cloned()
    }

    /// Every product now, in no particular order.
    pub fn all(&self) -> Vec<Arc<Product>> {
        self.read().values().cloned().collect()
    }

    /// Runs `f` over every product's configuration under the read lock (for
    /// key checks that must look at all of them without copying the set).
    pub fn with_configs<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &crate::config::ProductConfig>) -> R,
    ) -> R {
        let guard = self.read();
        let mut configs = guard.values().map(|p| &p.config);
        f(&mut configs)
    }

    /// Adds `product` unless its id is taken; gives it back if it is.
    pub fn insert_new(&self, product: Arc<Product>) -> Result<(), Arc<Product>> {
        let mut products = self.write();
        if products.contains_key(&*product.id) {
            return Err(product);
        }
        products.insert(product.id.to_string(), product);
        Ok(())
    }

    /// Replaces the product of the same id, if it is still `current` (so two
    /// concurrent rotations cannot both win). Whether it was replaced.
    pub fn replace(&self, current: &Arc<Product>, product: Arc<Product>) -> bool {
        let mut products = self.write();
        match products.get_mut(&*product.id) {
            Some(slot) if Arc::ptr_eq(slot, current) => {
                *slot = product;
                true
            }
            _ => false,
        }
    }

    /// Removes the product if it is still `current`.
    pub fn remove(&self, current: &Arc<Product>) -> bool {
        let mut products = self.write();
        match products.get(&*current.id) {
            Some(slot) if Arc::ptr_eq(slot, current) => {
                products.remove(&*current.id);
                true
            }
            _ => false,
        }
    }
}
