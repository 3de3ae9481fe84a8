/* The pod sandbox ("pause") process of the test node: holds the pod's
 * namespaces, blocks until SIGTERM or SIGINT, reaps nothing else.
 * Built `gcc -static` by tests/cluster/images into the image named
 * PAUSE_IMAGE in tests/cluster/versions.env. */
#include <signal.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

int main(void) {
  signal(SIGTERM, quit);
  signal(SIGINT, quit);
  for (;;) pause();
}
