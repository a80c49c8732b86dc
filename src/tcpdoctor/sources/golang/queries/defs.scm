; Definitions inside a function body: values that travel through local variables.
(short_var_declaration) @def
(assignment_statement left: (expression_list (identifier))) @def
(var_spec) @def
