#include <stdio.h>
#include "greet.h"

#ifndef GREETING
#define GREETING "Hello"
#endif

const char *greet_greeting(void) { return GREETING; }

int greet(const char *name) {
    return printf("%s, %s!\n", GREETING, name) < 0;
}
