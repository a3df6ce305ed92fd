! Each MPI rank computes a dot product with the vecmod library and rank 0
! prints the sum over all ranks.
program hello
  use mpi
  use vecmod
  implicit none
  integer :: ierr, rank, nprocs
  real(8) :: mine, total
  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nprocs, ierr)
  mine = dot([1d0, 2d0, 3d0], [real(rank + 1, 8), 1d0, 1d0])
  call MPI_Reduce(mine, total, 1, MPI_DOUBLE_PRECISION, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
  print '(a,i0,a,i0)', 'hello from rank ', rank, ' of ', nprocs
  if (rank == 0) print '(a,f0.1)', 'total ', total
  call MPI_Finalize(ierr)
end program hello
