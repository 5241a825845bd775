// The built-in Step-style chat template. Modelled on Step-3.5-Flash's conventions as vLLM's and SGLang's
// step3p5 tool parsers read them (Qwen3-Coder-style XML tool calls); the exact upstream template was not
// available offline, so the system-prompt wording and the tool-result turn follow the Qwen3-Coder family.
#include "text/jinja/chat_template.h"

namespace stepserve::text {
namespace {

constexpr std::string_view kStepChatTemplate = R"JINJA({#- Step-style chat template (stepserve built-in). -#}
{%- macro render_content(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is iterable and content is not mapping -%}
        {%- for part in content -%}
            {%- if part is string -%}
                {{- part -}}
            {%- elif part is mapping and part.type == 'text' -%}
                {{- part.text -}}
            {%- endif -%}
        {%- endfor -%}
    {%- elif content is defined and content is not none -%}
        {{- content | string -}}
    {%- endif -%}
{%- endmacro -%}
{%- set system_message = none %}
{%- set loop_messages = messages %}
{%- if messages and messages[0].role == 'system' %}
    {%- set system_message = render_content(messages[0].content) %}
    {%- set loop_messages = messages[1:] %}
{%- endif %}
{%- if tools is iterable and tools is not mapping and tools | length > 0 %}
    {{- '<|im_start|>system\n' }}
    {%- if system_message %}
        {{- system_message + '\n\n' }}
    {%- endif %}
    {{- '# Tools\n\nYou have access to the following functions:\n\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' + (tool | tojson) }}
    {%- endfor %}
    {{- '\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n' }}
    {{- '<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n' }}
    {{- '<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n' }}
    {{- '</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n' }}
    {{- '- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n' }}
    {{- '- Required parameters MUST be specified\n' }}
    {{- '- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\n' }}
    {{- '- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\n' }}
    {{- '</IMPORTANT><|im_end|>\n' }}
{%- elif system_message is not none %}
    {{- '<|im_start|>system\n' + system_message + '<|im_end|>\n' }}
{%- endif %}
{%- for message in loop_messages %}
    {%- set content = render_content(message.content) %}
    {%- if message.role == 'user' or message.role == 'system' %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- if message.reasoning_content is string and message.reasoning_content | trim %}
            {{- '<think>\n' + message.reasoning_content.strip('\n') + '\n</think>\n' }}
        {%- endif %}
        {{- content }}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if tool_call.function is defined %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {%- if not loop.first or content | trim %}
                    {{- '\n' }}
                {%- endif %}
                {{- '<tool_call>\n<function=' + tool_call.name + '>\n' }}
                {%- if tool_call.arguments is mapping %}
                    {%- for arg_name, arg_value in tool_call.arguments | items %}
                        {{- '<parameter=' + arg_name + '>\n' }}
                        {{- arg_value if arg_value is string else arg_value | tojson }}
                        {{- '\n</parameter>\n' }}
                    {%- endfor %}
                {%- elif tool_call.arguments is string and tool_call.arguments %}
                    {{- raise_exception('tool call arguments must be a JSON object, not a string') }}
                {%- endif %}
                {{- '</function>\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
        {%- if loop.last or loop_messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- else %}
        {{- raise_exception('unexpected message role: ' ~ message.role) }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n<think>\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
)JINJA";

}  // namespace

std::string_view BuiltinStepChatTemplate() { return kStepChatTemplate; }

}  // namespace stepserve::text
