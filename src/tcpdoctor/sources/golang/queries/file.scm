; Everything the Go extractors look at in one file, matched in C in one pass.
; Captures come back by name; the extractors sort them by position.
(function_declaration) @func
(method_declaration) @func
(func_literal) @func
(call_expression) @call
(composite_literal type: (qualified_type)) @literal
(assignment_statement left: (expression_list (selector_expression))) @field_assign
(for_statement) @loop
(send_statement) @send
(unary_expression operator: "<-") @recv
(var_spec type: (qualified_type)) @typed_var
