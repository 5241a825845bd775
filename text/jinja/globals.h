// The global functions of the template environment: range, namespace, dict, raise_exception, strftime_now.
#ifndef STEPSERVE_TEXT_JINJA_GLOBALS_H_
#define STEPSERVE_TEXT_JINJA_GLOBALS_H_

#include "text/jinja/interpreter.h"

namespace stepserve::text::jinja {

void InstallGlobals(Frame* frame);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_GLOBALS_H_
