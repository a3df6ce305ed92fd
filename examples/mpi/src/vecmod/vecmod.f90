! A Fortran module library: programs `use vecmod` (vecmod.mod) and link -lvecmod.
module vecmod
  implicit none
contains
  pure function dot(a, b) result(d)
    real(8), intent(in) :: a(:), b(:)
    real(8) :: d
    d = sum(a * b)
  end function dot
end module vecmod
