#| block #| nested |# |#
; c
#;(skipped) (list "a\x41;\n" 1.5 2. -3 #t #false [x])
