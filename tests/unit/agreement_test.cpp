// comm/agreement.h in a world of one (links lrfind_comm only); the multi-rank cases
// are in tests/mpi/mpi_agreement_test.cpp.

#include "comm/agreement.h"

#include <stdexcept>

#include <gtest/gtest.h>

#include "comm/self_communicator.h"

namespace lrfind::comm {
namespace {

TEST(AgreeOnSuccess, WorldOfOneRethrowsWithItsType) {
  SelfCommunicator self;
  EXPECT_NO_THROW(agreeOnSuccess(self, [] {}));
  EXPECT_THROW(agreeOnSuccess(self, [] { throw InputError("bad flag"); }), InputError);
  try {
    agreeOnSuccess(self, [] { throw std::runtime_error("disk"); });
    FAIL();
  } catch (const InputError&) {
    FAIL() << "a runtime failure is not an input error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "disk");
  }
}

TEST(Agreement, FailureKindFollowsTheExceptionType) {
  EXPECT_EQ(failureKind(InputError("x")), FailureKind::kInput);
  EXPECT_EQ(failureKind(comm::Agreed<InputError>("x")), FailureKind::kInput);
  EXPECT_EQ(failureKind(IoError("x")), FailureKind::kError);
  EXPECT_EQ(failureKind(std::runtime_error("x")), FailureKind::kError);
}

TEST(Agreement, ThrowAgreedKeepsTheKindAndMarksTheException) {
  try {
    throwAgreed(FailureKind::kInput, "rank 1: bad");
  } catch (const InputError& e) {
    EXPECT_TRUE(isAgreed(e));
    EXPECT_STREQ(e.what(), "rank 1: bad");
  }
  try {
    throwAgreed(FailureKind::kError, "rank 2: disk");
  } catch (const InputError&) {
    FAIL() << "kError is not an input error";
  } catch (const Error& e) {
    EXPECT_TRUE(isAgreed(e));
  }
  EXPECT_THROW(throwAgreed(FailureKind::kNone, "x"), Error);
  EXPECT_FALSE(isAgreed(InputError("x")));
}

TEST(Agreement, BroadcastTextInAWorldOfOneIsTheTextCut) {
  SelfCommunicator self;
  EXPECT_EQ(broadcastText(self, 0, "hello"), "hello");
  EXPECT_EQ(broadcastText(self, 0, std::string(5000, 'a')).size(), static_cast<std::size_t>(kMaxTextBytes - 1));
}

}  // namespace
}  // namespace lrfind::comm
