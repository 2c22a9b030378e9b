// Agreement across real ranks (comm/agreement.h over MpiCommunicator): every rank
// throws the same agreed exception, typed by the lowest failing rank's kind.

#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "comm/agreement.h"
#include "comm/mpi_communicator.h"

namespace lrfind::comm {
namespace {

// What agreeOnSuccess threw on this rank: {kind, message}; kNone when it returned.
std::pair<FailureKind, std::string> outcome(Communicator& comm, const std::function<void()>& body) {
  try {
    agreeOnSuccess(comm, body);
  } catch (const std::exception& e) {
    EXPECT_TRUE(isAgreed(e)) << e.what();
    return {failureKind(e), e.what()};
  }
  return {FailureKind::kNone, ""};
}

TEST(MpiAgreement, NoFailureReturnsEverywhere) {
  MpiCommunicator comm;
  EXPECT_EQ(outcome(comm, [] {}).first, FailureKind::kNone);
}

TEST(MpiAgreement, EveryRankThrowsTheLowestFailingRanksInputError) {
  MpiCommunicator comm;
  const auto [kind, text] = outcome(comm, [&] {
    if (comm.rank() == 1) throw InputError("bad label");
    if (comm.rank() > 1) throw std::runtime_error("disk full");  // higher ranks lose
  });
  EXPECT_EQ(kind, FailureKind::kInput);
  EXPECT_EQ(text, "rank 1: bad label");
}

TEST(MpiAgreement, TheLowestFailingRankDecidesTheKind) {
  MpiCommunicator comm;
  const auto [kind, text] = outcome(comm, [&] {
    if (comm.rank() == 0) throw std::runtime_error("disk full");
    throw InputError("bad label");
  });
  EXPECT_EQ(kind, FailureKind::kError);
  EXPECT_EQ(text, "rank 0: disk full");
}

TEST(MpiAgreement, BroadcastTextFromTheLastRank) {
  MpiCommunicator comm;
  const int last = comm.size() - 1;
  EXPECT_EQ(broadcastText(comm, last, comm.rank() == last ? "from the last" : ""), "from the last");
}

}  // namespace
}  // namespace lrfind::comm
