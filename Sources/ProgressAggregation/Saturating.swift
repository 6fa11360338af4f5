/// Arithmetic on numbers that came from outside: it clamps at the type's bounds instead of trapping.
/// The schemas bound every integer to JSON's safe range, but state records, flags and other schemas
/// might not, and a trap would crash-loop the bridge on the same record.
extension FixedWidthInteger {
    /// `self + other`, clamped to the type's range.
    @inlinable
    public func adding(saturating other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, clamped to the type's range.
    @inlinable
    public func subtracting(saturating other: Self) -> Self {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : difference
    }
}
