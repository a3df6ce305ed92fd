/* The same greeting from C, built with mpicc. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int rank, size;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(version, &len);
    printf("hello from C rank %d of %d\n", rank, size);
    if (rank == 0) printf("library %.20s\n", version);
    MPI_Finalize();
    return 0;
}
