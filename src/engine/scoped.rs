//! Per-thread settings in force for a scope: `--precision` (`engine::precision`), gradient recording
//! (`engine::autograd`), gradient checkpointing (`engine::recompute`), and the tests' forced limits (the
//! workgroup fold, the norms' slices). Each is a `thread_local!` cell; [`with_set`] sets it for the
//! duration of a closure and puts the previous value back afterwards, also when the closure panics.

use std::cell::Cell;
use std::thread::LocalKey;

/// Runs `f` with `cell` set to `value` on this thread; restores the previous value afterwards, also on
/// panic.
pub fn with_set<T: Copy + 'static, R>(
    cell: &'static LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(cell, cell.with(|c| c.replace(value)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SETTING: Cell<u32> = const { Cell::new(1) };
    }

    #[test]
    fn the_value_holds_inside_and_the_old_one_returns_also_after_a_panic() {
        let inner = with_set(&SETTING, 2, || {
            with_set(&SETTING, 3, || SETTING.with(Cell::get))
        });
        assert_eq!((inner, SETTING.with(Cell::get)), (3, 1));
        let r = std::panic::catch_unwind(|| with_set(&SETTING, 4, || panic!("inside")));
        assert!(r.is_err());
        assert_eq!(SETTING.with(Cell::get), 1);
    }
}
