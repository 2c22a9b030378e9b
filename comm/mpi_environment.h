#pragma once
// RAII for the MPI library: MPI_Init_thread on construction (FUNNELED: only the thread
// that constructs it calls MPI), MPI_Finalize on destruction. Construct it once, in
// main's thread, before any MpiCommunicator; destroy it after every communicator (the
// runtime's shutdown order: communicators, then CUDA, then MPI_Finalize).
//
// If MPI was already initialized by someone else (a host application), the
// environment neither initializes nor finalizes it.

namespace lrfind::comm {

class MpiEnvironment {
 public:
  MpiEnvironment();
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  // "Open MPI v4.1.4, ..." from MPI_Get_library_version.
  static const char* libraryVersion();

 private:
  bool owns_ = false;
};

}  // namespace lrfind::comm
