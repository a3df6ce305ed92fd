#ifndef GREET_H
#define GREET_H
/* Writes "<greeting>, <name>!" to stdout; returns 0 on success. */
int greet(const char *name);
const char *greet_greeting(void);
#endif
