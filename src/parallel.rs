//! Work split over threads for the few bulk operations that can use every core (encoding and
//! decoding snapshots). Scoped threads, one per item: the items are few and large.

/// `f(i, item)` for every item, each on its own thread; results in item order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.iter().enumerate().map(|(i, t)| scope.spawn(move || f(i, t))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// `f(i, item)` for every item, each on its own thread, with the item mutable.
pub fn map_mut<T: Send, R: Send>(items: &mut [T], f: impl Fn(usize, &mut T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.iter_mut().enumerate().map(|(i, t)| scope.spawn(move || f(i, t))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}
