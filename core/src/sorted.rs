//! Walking two sorted rule lists as one: the rules naming the caller and the rules open to every caller are
//! indexed apart (so a decision never scans other callers' rules), but must be tried in policy order.

/// The elements of two ascending slices in ascending order (ties: `a` first), without allocating.
pub(crate) fn merged<'s, T: Ord + Copy>(a: &'s [T], b: &'s [T]) -> impl Iterator<Item = T> + 's {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || match (a.get(i), b.get(j)) {
        (Some(x), Some(y)) if x <= y => {
            i += 1;
            Some(*x)
        }
        (_, Some(y)) => {
            j += 1;
            Some(*y)
        }
        (Some(x), None) => {
            i += 1;
            Some(*x)
        }
        (None, None) => None,
    })
}
