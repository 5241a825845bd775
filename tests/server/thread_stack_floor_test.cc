// The stepserve executable interposes pthread_attr_setstacksize (server/thread_stack_floor.cc) so that
// civetweb's 100 KiB thread stacks still fit the static TLS of libopenblas + libglog + libtorch.
#include <pthread.h>

#include <gtest/gtest.h>

namespace {

void* Noop(void*) { return nullptr; }

TEST(ThreadStackFloorTest, SmallExplicitStackIsRaisedToOneMebibyte) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 100 * 1024), 0);  // what civetweb asks for
  size_t size = 0;
  ASSERT_EQ(pthread_attr_getstacksize(&attr, &size), 0);
  EXPECT_GE(size, size_t{1} << 20);
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr, Noop, nullptr), 0) << "a civetweb-sized thread cannot start";
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

TEST(ThreadStackFloorTest, LargerRequestsAreKept) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, size_t{16} << 20), 0);
  size_t size = 0;
  ASSERT_EQ(pthread_attr_getstacksize(&attr, &size), 0);
  EXPECT_EQ(size, size_t{16} << 20);
  pthread_attr_destroy(&attr);
}

}  // namespace
